//! High Availability sets: a report naming a new member adds it to the set, a switchover moves
//! the reporting role to the new active, and only the active's usage is counted.

use outpost_core::device::Status;
use outpost_pi_sim::{Device, ENTITLEMENT_TAG};
use outpost_tests::TestApp;
use reqwest::Method;

async fn in_use(app: &TestApp, token: &str) -> i64 {
    let account = app.account("Acme").await.id;
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{account}/licenses"),
            token,
            None,
        )
        .await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["entitlement_tag"] == ENTITLEMENT_TAG)
        .map(|i| i["in_use"].as_i64().unwrap())
        .sum()
}

async fn reporting(app: &TestApp) -> Vec<String> {
    app.count_rows(
        "SELECT p.udi_serial_number || ' -> ' || coalesce(a.udi_serial_number, 'reports')
           FROM product_instances p LEFT JOIN product_instances a ON a.id = p.ha_active_pi
          ORDER BY 1",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_moves_the_reporting_role_and_only_the_active_counts() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    assert_eq!(
        app.sync("Acme").await,
        outpost_db::enums::JobState::Succeeded
    );

    // The standby reported on its own once, before it was paired (it has its own PI).
    let mut standby_alone = Device::new("C9500-48Y4C", "FDOHA0002");
    standby_alone.license_count = 4;
    app.push_next_report(&mut standby_alone, "Acme-1").await;
    assert_eq!(in_use(&app, &admin).await, 4);

    // The set: active 1 with standby 2; the active's report names the standby.
    let mut set = Device::new("C9500-48Y4C", "FDOHA0001").with_standby("FDOHA0002");
    set.license_count = 2;
    assert_eq!(
        app.push_next_report(&mut set, "Acme-1").await.status,
        Status::OkPoll
    );
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> reports", "FDOHA0002 -> FDOHA0001"]
    );
    assert_eq!(
        in_use(&app, &admin).await,
        2,
        "the standby's own usage no longer counts"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE action = 'ha.switchover'")
            .await,
        1,
        "the standby handed its reporting role to the set's active"
    );

    // A new member joins the set.
    set.ha_members
        .push(outpost_core::Sudi::new("C9500-48Y4C", "FDOHA0003"));
    app.push_next_report(&mut set, "Acme-1").await;
    assert_eq!(
        app.count_rows(
            "SELECT role || ' ' || udi_serial_number FROM pi_ha_members ORDER BY udi_serial_number"
        )
        .await,
        ["Active FDOHA0001", "Standby FDOHA0002", "Member FDOHA0003"]
    );
    assert_eq!(
        app.count_rows("SELECT detail->'members'->>0 FROM events WHERE action = 'ha.member_added'")
            .await,
        ["PID:C9500-48Y4C,SN:FDOHA0003 (Member)"]
    );

    // Switchover: the standby becomes the active and reports for the set.
    set.switch_over();
    set.license_count = 3;
    assert_eq!(
        app.push_next_report(&mut set, "Acme-1").await.status,
        Status::OkPoll
    );
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> FDOHA0002", "FDOHA0002 -> reports"]
    );
    assert_eq!(
        in_use(&app, &admin).await,
        3,
        "only the new active's usage counts"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE action = 'ha.switchover'")
            .await,
        2
    );
    // The PI detail names the PI that reports for the set.
    let account = app.account("Acme").await.id;
    let (old, new) = (
        app.count_rows(
            "SELECT id::text FROM product_instances WHERE udi_serial_number = 'FDOHA0001'",
        )
        .await
        .remove(0),
        app.count_rows(
            "SELECT id::text FROM product_instances WHERE udi_serial_number = 'FDOHA0002'",
        )
        .await
        .remove(0),
    );
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{account}/product-instances/{old}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(body["ha_reporting_pi"], new.as_str(), "{body}");

    // And back: the first unit takes over again.
    set.switch_over();
    set.license_count = 5;
    app.push_next_report(&mut set, "Acme-1").await;
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> reports", "FDOHA0002 -> FDOHA0001"]
    );
    assert_eq!(in_use(&app, &admin).await, 5);

    // The set no longer names unit 2 (it left the stack): unit 2 counts on its own again.
    set.ha_members
        .retain(|m| m.udi_serial_number != "FDOHA0002");
    set.license_count = 5;
    app.push_next_report(&mut set, "Acme-1").await;
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> reports", "FDOHA0002 -> reports"]
    );
    assert_eq!(
        in_use(&app, &admin).await,
        5 + 3,
        "unit 2's last own usage counts again"
    );

    // Named again, then reporting for itself alone (no ha_udi): it counts again too.
    set.ha_members
        .insert(0, outpost_core::Sudi::new("C9500-48Y4C", "FDOHA0002"));
    app.push_next_report(&mut set, "Acme-1").await;
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> reports", "FDOHA0002 -> FDOHA0001"]
    );
    let mut alone = Device::new("C9500-48Y4C", "FDOHA0002");
    alone.next_report_id = 1_800_000_000;
    alone.license_count = 4;
    app.push_next_report(&mut alone, "Acme-1").await;
    assert_eq!(
        reporting(&app).await,
        ["FDOHA0001 -> reports", "FDOHA0002 -> reports"]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE action = 'ha.reporting_alone'")
            .await,
        1
    );
}
