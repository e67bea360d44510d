// @generated from the migrated database by the schema test of the integration suite:
// `UPDATE_SCHEMA=1 ./scripts/test schema` rewrites it. Do not edit by hand.
//! The diesel schema of Outpost's tables.

diesel::table! {
    account_former_names (name) {
        name -> Text,
        account_id -> Uuid,
        renamed_at -> Timestamptz,
    }
}

diesel::table! {
    acks (id) {
        id -> Uuid,
        account_id -> Uuid,
        pi_id -> Uuid,
        smart_license -> Text,
        sha256 -> Text,
        acked_report_ids -> Array<Int8>,
        has_policy -> Bool,
        source -> Text,
        upload_id -> Nullable<Uuid>,
        received_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    alerts (id) {
        id -> Int8,
        account_id -> Uuid,
        pi_id -> Nullable<Uuid>,
        kind -> Text,
        severity -> Text,
        message -> Text,
        raised_at -> Timestamptz,
        updated_at -> Timestamptz,
        cleared_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    authorizations (id) {
        id -> Uuid,
        account_id -> Uuid,
        lva_id -> Uuid,
        pi_id -> Nullable<Uuid>,
        request_id -> Nullable<Uuid>,
        udi_pid -> Text,
        udi_serial_number -> Text,
        entitlement_tag -> Text,
        count -> Int4,
        state -> Text,
        source -> Text,
        smart_license -> Nullable<Text>,
        confirm_code -> Nullable<Text>,
        return_code -> Nullable<Text>,
        error -> Nullable<Text>,
        superseded_by -> Nullable<Uuid>,
        cssm_poll_id -> Nullable<Text>,
        requested_at -> Timestamptz,
        issued_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        confirmed_at -> Nullable<Timestamptz>,
        returned_at -> Nullable<Timestamptz>,
        return_forwarded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    cssm_uploads (id) {
        id -> Uuid,
        account_id -> Uuid,
        smart_account -> Text,
        virtual_account -> Text,
        nonce -> Text,
        state -> Text,
        poll_id -> Nullable<Text>,
        report_count -> Int4,
        duplicate_count -> Int4,
        bytes -> Int8,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    device_polls (id) {
        id -> Uuid,
        account_id -> Uuid,
        pi_id -> Uuid,
        report_ids -> Array<Int8>,
        created_at -> Timestamptz,
        authorization_request -> Nullable<Uuid>,
    }
}

diesel::table! {
    entitlement_usage (pi_id, entitlement_tag) {
        account_id -> Uuid,
        pi_id -> Uuid,
        entitlement_tag -> Text,
        count -> Int8,
        measured_until -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Int8,
        account_id -> Nullable<Uuid>,
        pi_id -> Nullable<Uuid>,
        actor -> Text,
        action -> Text,
        result -> Text,
        detail -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Uuid,
        kind -> Text,
        account_id -> Nullable<Uuid>,
        payload -> Jsonb,
        dedup_key -> Nullable<Text>,
        state -> Text,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        locked_by -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamptz>,
        progress -> Nullable<Jsonb>,
        result -> Nullable<Jsonb>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    licenses (lva_id, entitlement_tag) {
        account_id -> Uuid,
        lva_id -> Uuid,
        entitlement_tag -> Text,
        name -> Text,
        quantity -> Int8,
        enforcement -> Text,
        term -> Text,
        end_date -> Nullable<Date>,
        synced_at -> Timestamptz,
    }
}

diesel::table! {
    local_accounts (id) {
        id -> Uuid,
        name -> Text,
        smart_account -> Text,
        virtual_account -> Text,
        email -> Text,
        status -> Text,
        status_reason -> Nullable<Text>,
        time_zone -> Text,
        cssm_registration_id -> Nullable<Text>,
        cssm_client_id -> Nullable<Text>,
        cssm_client_secret -> Nullable<Text>,
        cssm_smart_account_id -> Nullable<Text>,
        cssm_virtual_account_id -> Nullable<Text>,
        registered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        registration_request_nonce -> Nullable<Text>,
        last_lva_number -> Int4,
        requested_by -> Nullable<Uuid>,
        validate_device -> Nullable<Bool>,
        nat_support -> Nullable<Bool>,
        reporting_interval_days -> Nullable<Int4>,
    }
}

diesel::table! {
    local_virtual_accounts (id) {
        id -> Uuid,
        account_id -> Uuid,
        number -> Int4,
        name -> Text,
        tenant_id -> Text,
        smart_account -> Nullable<Text>,
        virtual_account -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    pi_files (id) {
        id -> Uuid,
        account_id -> Uuid,
        pi_id -> Uuid,
        kind -> Text,
        sudi -> Nullable<Jsonb>,
        smart_license -> Text,
        sha256 -> Text,
        ack_id -> Nullable<Uuid>,
        received_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        installed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    pi_ha_members (pi_id, udi_pid, udi_serial_number) {
        account_id -> Uuid,
        pi_id -> Uuid,
        role -> Text,
        udi_pid -> Text,
        udi_serial_number -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    product_instances (id) {
        id -> Uuid,
        account_id -> Uuid,
        lva_id -> Uuid,
        udi_pid -> Nullable<Text>,
        udi_serial_number -> Nullable<Text>,
        sudi -> Jsonb,
        product_instance_identifier -> Nullable<Text>,
        hostname -> Nullable<Text>,
        software_version -> Nullable<Text>,
        software_tag -> Nullable<Text>,
        connect_method -> Text,
        last_contact_at -> Nullable<Timestamptz>,
        source_address -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        host -> Nullable<Text>,
        port -> Nullable<Int4>,
        credentials -> Nullable<Bytea>,
        behind_nat -> Bool,
        smart_account -> Nullable<Text>,
        virtual_account -> Nullable<Text>,
        has_open_alert -> Bool,
        first_consumed_at -> Nullable<Timestamptz>,
        usage_changed_at -> Nullable<Timestamptz>,
        usage_change_tags -> Array<Text>,
        last_report_at -> Nullable<Timestamptz>,
        policy -> Nullable<Jsonb>,
        trust_requests -> Nullable<Jsonb>,
        trust_forwarded_at -> Nullable<Timestamptz>,
        ha_active_pi -> Nullable<Uuid>,
        peer_fingerprint -> Nullable<Text>,
        peer_fingerprint_at -> Nullable<Timestamptz>,
        last_pull_at -> Nullable<Timestamptz>,
        plain_http -> Bool,
    }
}

diesel::table! {
    pull_drops (token_sha256) {
        token_sha256 -> Text,
        account_id -> Uuid,
        pi_id -> Uuid,
        purpose -> Text,
        file -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        reports -> Nullable<Int4>,
        reports_new -> Nullable<Int4>,
    }
}

diesel::table! {
    rum_reports (id) {
        id -> Int8,
        account_id -> Uuid,
        pi_id -> Uuid,
        report_id -> Int8,
        payload -> Text,
        signature -> Jsonb,
        header -> Nullable<Jsonb>,
        entitlement_tag -> Nullable<Text>,
        telemetry -> Bool,
        source -> Text,
        received_at -> Timestamptz,
        upload_id -> Nullable<Uuid>,
        uploaded_at -> Nullable<Timestamptz>,
        exported_at -> Nullable<Timestamptz>,
        ack_id -> Nullable<Uuid>,
        acked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    schedules (account_id, kind) {
        account_id -> Uuid,
        kind -> Text,
        enabled -> Bool,
        every_days -> Int4,
        hour -> Int4,
        minute -> Int4,
        time_zone -> Text,
        next_run_at -> Timestamptz,
        last_enqueued_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Uuid,
        account_id -> Uuid,
        job_id -> Nullable<Uuid>,
        channel -> Text,
        direction -> Text,
        state -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        duration_ms -> Nullable<Int8>,
        reports_sent -> Int4,
        reports_duplicate -> Int4,
        acks_received -> Int4,
        reports_acked -> Int4,
        licenses_synced -> Int4,
        bytes_sent -> Int8,
        bytes_received -> Int8,
        sha256 -> Nullable<Text>,
        file_name -> Nullable<Text>,
        message -> Nullable<Text>,
    }
}

diesel::table! {
    system_settings (id) {
        id -> Bool,
        validate_device -> Bool,
        jwt_secret -> Nullable<Text>,
        instance_private_key_pem -> Nullable<Text>,
        updated_at -> Timestamptz,
        nat_support -> Bool,
    }
}

diesel::table! {
    user_account_roles (user_id, account_id) {
        user_id -> Uuid,
        account_id -> Uuid,
        role -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        password_hash -> Text,
        role -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (delivery_id, attempt) {
        delivery_id -> Uuid,
        attempt -> Int4,
        at -> Timestamptz,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        duration_ms -> Int4,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        webhook_id -> Uuid,
        account_id -> Uuid,
        event -> Text,
        body -> Text,
        state -> Text,
        attempts -> Int4,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Uuid,
        account_id -> Uuid,
        url -> Text,
        secret -> Text,
        kinds -> Array<Text>,
        enabled -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    account_former_names,
    acks,
    alerts,
    authorizations,
    cssm_uploads,
    device_polls,
    entitlement_usage,
    events,
    jobs,
    licenses,
    local_accounts,
    local_virtual_accounts,
    pi_files,
    pi_ha_members,
    product_instances,
    pull_drops,
    rum_reports,
    schedules,
    sync_runs,
    system_settings,
    user_account_roles,
    users,
    webhook_attempts,
    webhook_deliveries,
    webhooks,
);
