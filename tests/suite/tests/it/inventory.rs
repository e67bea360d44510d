//! The inventory ("SL Using Policy") and license pools through the HTTP API: list with search,
//! filters, sorting and cursor pages; PI detail; add; CSV import (all or nothing), template and
//! export; transfer; removal; license positions and transfers between LVAs.

use outpost_core::device::Status;
use outpost_db::enums::JobState;
use outpost_pi_sim::{Device, ENTITLEMENT_TAG};
use outpost_tests::{TestApp, error_code};
use reqwest::Method;
use serde_json::{Value, json};

async fn text(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let response = app
        .http()
        .get(format!("{}{path}", app.admin_base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn import(app: &TestApp, token: &str, account: &str, csv: String) -> (u16, Value) {
    app.post_csv(
        &format!("/api/v1/accounts/{account}/product-instances/import"),
        token,
        csv,
    )
    .await
}

/// Every page of a list, following `next_cursor`; returns the ids in order.
async fn all_pages(app: &TestApp, token: &str, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base.to_owned(),
        };
        let (status, body) = app.api(Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        ids.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_lists_searches_filters_and_pages_without_overlap() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &admin,
            Some(json!({ "name": "Lab" })),
        )
        .await;
    assert_eq!(status, 201);

    // 120 PIs from a CSV: 100 push switches in LVA 1, 20 NETCONF routers in LVA 2.
    let mut csv = String::from(
        "udi_pid,udi_serial_number,hostname,host,connect_method,username,password,lva\n",
    );
    for i in 0..100 {
        csv.push_str(&format!(
            "C9300-24UX,FCW{i:05},sw-{i:03}.campus,,push,,,1\n"
        ));
    }
    for i in 0..20 {
        csv.push_str(&format!(
            "ISR4451,FGL{i:05},rtr-{i:02},10.0.0.{i},netconf,netops,Secr3t-{i},2\n"
        ));
    }
    let (status, body) = import(&app, &admin, &a, csv).await;
    assert_eq!(
        (status, body["created"].as_u64()),
        (200, Some(120)),
        "{body}"
    );

    let base = format!("/api/v1/accounts/{a}/product-instances?per_page=50");
    let ids = all_pages(&app, &admin, &base).await;
    assert_eq!(ids.len(), 120);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 120, "pages overlap");
    let (_, first) = app.api(Method::GET, &base, &admin, None).await;
    assert_eq!(first["total"], 120);
    assert_eq!(
        first["items"][0]["udi_serial_number"], "FCW00000",
        "sorted by UDI"
    );
    // Descending by hostname, followed through cursors, is the exact reverse order.
    let down = all_pages(&app, &admin, &format!("{base}&sort=hostname&order=desc")).await;
    let up = all_pages(&app, &admin, &format!("{base}&sort=hostname")).await;
    assert_eq!(
        down.iter().rev().collect::<Vec<_>>(),
        up.iter().collect::<Vec<_>>()
    );
    // Search results page by cursor too, without overlap (they are sorted whole when few).
    let found = all_pages(
        &app,
        &admin,
        &format!(
            "/api/v1/accounts/{a}/product-instances?per_page=7&q=fcw&sort=hostname&order=desc"
        ),
    )
    .await;
    let mut unique = found.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((found.len(), unique.len()), (100, 100));
    // Page numbers work too.
    let (_, page3) = app
        .api(Method::GET, &format!("{base}&page=3"), &admin, None)
        .await;
    assert_eq!(page3["items"].as_array().unwrap().len(), 20);
    assert_eq!(page3["items"][0]["id"].as_str(), Some(ids[100].as_str()));

    // Search (substring of UDI, hostname or host, literal), filters and their combination.
    let total = |query: String| {
        let app = &app;
        let admin = &admin;
        let a = &a;
        async move {
            let (status, body) = app
                .api(
                    Method::GET,
                    &format!("/api/v1/accounts/{a}/product-instances?{query}"),
                    admin,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body["total"].as_i64().unwrap()
        }
    };
    assert_eq!(total("q=fcw0001".into()).await, 10, "FCW00010..FCW00019");
    assert_eq!(total("q=sw-05".into()).await, 10);
    assert_eq!(
        total("q=10.0.0.1".into()).await,
        11,
        "10.0.0.1 and 10.0.0.1x"
    );
    assert_eq!(total("q=%25".into()).await, 0, "% is literal");
    assert_eq!(total("connect_method=netconf".into()).await, 20);
    assert_eq!(total("lva=2&q=rtr-1".into()).await, 10);
    assert_eq!(
        total("last_contact_older_than_days=1".into()).await,
        120,
        "never contacted counts as old"
    );
    assert_eq!(total("alert=any".into()).await, 0);

    // A device that reports gets an alert and a fresh last contact.
    let mut device = Device::new("C9300-24UX", "FCW00007");
    assert_eq!(
        app.push_next_report(&mut device, "Acme-1").await.status,
        Status::OkPoll
    );
    assert_eq!(total("alert=any".into()).await, 1);
    assert_eq!(total("alert=usage_report_received".into()).await, 1);
    assert_eq!(total("alert=none".into()).await, 119);
    assert_eq!(total("last_contact_older_than_days=1".into()).await, 119);
    let (_, recent) = app
        .api(
            Method::GET,
            &format!(
                "/api/v1/accounts/{a}/product-instances?sort=last_contact&order=desc&per_page=1"
            ),
            &admin,
            None,
        )
        .await;
    assert_eq!(recent["items"][0]["udi_serial_number"], "FCW00007");
    assert_eq!(recent["items"][0]["open_alerts"], 1);

    // Bad parameters are refused clearly.
    for query in [
        "sort=color",
        "order=up",
        "per_page=0",
        "per_page=501",
        "connect_method=telnet",
        "cursor=garbage",
        "lva=9",
        "page=0",
    ] {
        let (status, body) = app
            .api(
                Method::GET,
                &format!("/api/v1/accounts/{a}/product-instances?{query}"),
                &admin,
                None,
            )
            .await;
        assert!(status == 422 || status == 404, "{query}: {status} {body}");
        assert!(body["error"]["message"].is_string());
    }
    // A cursor of one sort order is refused by another.
    let (_, hostname_page) = app
        .api(Method::GET, &format!("{base}&sort=hostname"), &admin, None)
        .await;
    let cursor = hostname_page["next_cursor"].as_str().unwrap();
    let (status, _) = app
        .api(
            Method::GET,
            &format!("{base}&cursor={cursor}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 422);

    // PI detail: its report, usage and alert; the credentials of a pulled PI never come back.
    let pi = recent["items"][0]["id"].as_str().unwrap();
    let (status, detail) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances/{pi}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["reports"].as_array().unwrap().len(), 1);
    assert_eq!(detail["usage"][0]["entitlement_tag"], ENTITLEMENT_TAG);
    assert_eq!(detail["alerts"][0]["kind"], "usage_report_received");
    assert_eq!(detail["lva"]["number"], 1);
    let (_, routers) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances?connect_method=netconf&per_page=1"),
            &admin,
            None,
        )
        .await;
    let router = routers["items"][0]["id"].as_str().unwrap();
    let (_, detail) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances/{router}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(detail["has_credentials"], true);
    assert!(!detail.to_string().contains("Secr3t"), "{detail}");
    assert!(!detail.to_string().contains("netops"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_is_all_or_nothing_and_names_every_bad_row() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();

    let (status, template) = text(
        &app,
        &admin,
        &format!("/api/v1/accounts/{a}/product-instances/template.csv"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        template.trim(),
        "udi_pid,udi_serial_number,hostname,host,port,connect_method,username,password,lva,smart_account,virtual_account,behind_nat,plain_http"
    );

    // 10,000 rows built on the template import at once.
    let mut csv = template.clone();
    for i in 0..10_000 {
        if i % 2 == 0 {
            csv.push_str(&format!("C9200-24T,JAE{i:06},sw-{i},,,push,,,1,,,false,\n"));
        } else {
            csv.push_str(&format!(
                ",,,host-{i}.example,8443,restconf,admin,\"pa,ss\"\"{i}\",1,,,,false\n"
            ));
        }
    }
    let (status, body) = import(&app, &admin, &a, csv).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["created"].as_u64(), body["updated"].as_u64()),
        (Some(10_000), Some(0))
    );
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances").await,
        10_000
    );
    // Credentials are sealed: the raw column never holds the password.
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE credentials IS NOT NULL")
            .await,
        5_000
    );
    assert_eq!(app.count("SELECT count(*) FROM product_instances WHERE position('pa,ss'::bytea in credentials) > 0 OR position('admin'::bytea in credentials) > 0").await, 0);

    // Files made from the template before it had `plain_http` still import.
    let legacy = template.replace(",plain_http", "");
    // One bad row among 10,000: nothing is imported, and the answer names the row and why.
    let mut csv = legacy.clone();
    for i in 0..10_000 {
        if i == 4_321 {
            csv.push_str("C9200-24T,NEW004321,,,70000,push,,,1,,,\n");
        } else {
            csv.push_str(&format!("C9200-24T,NEW{i:06},,,,push,,,1,,,\n"));
        }
    }
    let (status, body) = import(&app, &admin, &a, csv).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_rows"), "{body}");
    assert_eq!(
        body["error"]["details"]["rows"],
        json!([{ "line": 4_323, "reason": "port 70000 is not between 1 and 65535" }])
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 4323")
    );
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances").await,
        10_000,
        "nothing imported"
    );

    // Every kind of bad row is listed with its line.
    let csv = format!(
        "{legacy}\
         C9200-24T,A1,,,,push,,,1,,,\n\
         C9200-24T,A1,,,,push,,,1,,,\n\
         ,,,,,push,,,1,,,\n\
         ,,,,,netconf,,,1,,,\n\
         C9200-24T,A2,,,,telnet,,,1,,,\n\
         C9200-24T,A3,,,,push,,,7,,,\n\
         C9200-24T,A4,,,,push,user,,1,,,\n\
         C9200-24T,A5,,,,push,,,1,SA only,,\n\
         C9200-24T,A6,,,,push,,,1,,,maybe\n\
         C9200-24T,,,,,push,,,1,,,\n\
         ,,,h1.example,,rest,,,1,,,true\n\
         C9200-24T,JAE000000,,host-1.example,8443,push,,,1,,,\n"
    );
    let (status, body) = import(&app, &admin, &a, csv).await;
    assert_eq!(status, 422, "{body}");
    let lines: Vec<u64> = body["error"]["details"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], "{body:#}");
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances").await,
        10_000
    );
    // A row valid by itself but whose host belongs to another PI is refused by the database check.
    let csv = format!("{legacy}C9200-24T,JAE000000,,host-1.example,8443,push,,,1,,,\n");
    let (status, body) = import(&app, &admin, &a, csv).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["rows"][0]["line"], 2);
    assert!(
        body["error"]["details"]["rows"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("host-1.example")
    );

    // Unknown columns and non-CSV are refused as a whole.
    let (status, body) = import(&app, &admin, &a, "serial,colour\n1,red\n".into()).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("serial, colour"),
        "{body}"
    );
    let (status, _) = import(&app, &admin, &a, template.clone()).await;
    assert_eq!(status, 422, "a header without rows");

    // Export -> import round-trips: every PI is matched and updated, none created.
    let (status, export) = text(
        &app,
        &admin,
        &format!("/api/v1/accounts/{a}/product-instances/export.csv"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(export.lines().count(), 10_001);
    assert!(
        export
            .lines()
            .next()
            .unwrap()
            .ends_with(",last_contact_at,software_version")
    );
    assert!(!export.contains("pa,ss"), "credentials are never exported");
    let fingerprint = "SELECT md5(string_agg(concat_ws('|', id, udi_pid, udi_serial_number, hostname, host, port, connect_method, encode(credentials, 'hex'), lva_id, smart_account, virtual_account, behind_nat), ',' ORDER BY id)) FROM product_instances";
    let before = app.count_rows(fingerprint).await;
    let (status, body) = import(&app, &admin, &a, export).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["created"].as_u64(), body["updated"].as_u64()),
        (Some(0), Some(10_000))
    );
    assert_eq!(
        app.count_rows(fingerprint).await,
        before,
        "an exported file re-imported changes nothing"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE credentials IS NOT NULL")
            .await,
        5_000,
        "a re-import without passwords keeps the stored ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_instances_are_added_transferred_and_removed_without_losing_usage() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    app.api(
        Method::POST,
        &format!("/api/v1/accounts/{a}/virtual-accounts"),
        &admin,
        Some(json!({ "name": "Lab" })),
    )
    .await;

    // Single adds, with clear refusals.
    let pis = format!("/api/v1/accounts/{a}/product-instances");
    let add = |body: Value| app.api(Method::POST, &pis, &admin, Some(body));
    let (status, created) = add(json!({ "host": "10.1.1.1", "connect_method": "restconf", "username": "u", "password": "p", "lva": 2 })).await;
    assert_eq!(status, 201, "{created}");
    let router = created["id"].as_str().unwrap().to_owned();
    for (body, fragment) in [
        (json!({ "connect_method": "rest" }), "needs a host"),
        (json!({ "host": "10.1.1.2" }), "needs udi_pid"),
        (json!({ "udi_pid": "X" }), "go together"),
        (
            json!({ "host": "not a host!", "connect_method": "rest" }),
            "not a host name",
        ),
        (
            json!({ "host": "10.1.1.3", "connect_method": "netconf", "behind_nat": true }),
            "behind NAT",
        ),
        (
            json!({ "udi_pid": "X", "udi_serial_number": "Y", "lva": 5 }),
            "does not exist",
        ),
    ] {
        let (status, body) = add(body.clone()).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(fragment),
            "{fragment}: {body}"
        );
    }
    let (status, body) = add(json!({ "host": "10.1.1.1", "connect_method": "rest", "udi_pid": "ISR4451", "udi_serial_number": "OTHER" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "conflict"),
        "host taken by another PI: {body}"
    );

    // A pushing device, transferred to LVA 2 and back with the router, in bulk.
    let mut device = Device::new("C9300-24UX", "FCW2134L00C");
    let report = device.next_report();
    device
        .push(&app.pi_client("Acme-1"), vec![report])
        .await
        .unwrap();
    let switch: String = app
        .count_rows(
            "SELECT id::text FROM product_instances WHERE udi_serial_number = 'FCW2134L00C'",
        )
        .await
        .remove(0);
    let transfer_path = format!("/api/v1/accounts/{a}/product-instances/transfer");
    let transfer = |ids: Value, to: i32| {
        app.api(
            Method::POST,
            &transfer_path,
            &admin,
            Some(json!({ "product_instance_ids": ids, "to_lva": to })),
        )
    };
    assert_eq!(transfer(json!([switch]), 2).await.0, 200);
    assert_eq!(app.count("SELECT count(*) FROM product_instances p JOIN local_virtual_accounts l ON l.id = p.lva_id WHERE l.number = 2").await, 2);
    // An unknown id in a bulk transfer moves nothing.
    let (status, _) = transfer(json!([switch, router, uuid::Uuid::now_v7()]), 1).await;
    assert_eq!(status, 404);
    assert_eq!(app.count("SELECT count(*) FROM product_instances p JOIN local_virtual_accounts l ON l.id = p.lva_id WHERE l.number = 2").await, 2);
    assert_eq!(transfer(json!([switch, router]), 1).await.0, 200);
    assert_eq!(app.count("SELECT count(*) FROM product_instances p JOIN local_virtual_accounts l ON l.id = p.lva_id WHERE l.number = 1").await, 2);

    // Removing a device whose usage CSSM has not acknowledged is refused unless forced.
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/product-instances/{switch}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "unacknowledged_reports"),
        "{body}"
    );
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/product-instances/{switch}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204, "acknowledged: removable");
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/product-instances/remove"),
            &admin,
            Some(json!({ "product_instance_ids": [router] })),
        )
        .await;
    assert_eq!((status, body["removed"].as_u64()), (200, Some(1)));
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 0);
    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/product-instances/{router}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licenses_show_purchased_in_use_and_shortfall_and_transfer_between_lvas() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    app.api(
        Method::POST,
        &format!("/api/v1/accounts/{a}/virtual-accounts"),
        &admin,
        Some(json!({ "name": "Lab" })),
    )
    .await;
    // Usage: 3 devices of LVA 2, one license each.
    for serial in ["L1", "L2", "L3"] {
        let mut device = Device::new("C9300-24UX", serial);
        let report = device.next_report();
        device
            .push(&app.pi_client("Acme-2"), vec![report])
            .await
            .unwrap();
    }
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let position = |items: &Value, lva: i64, tag: &str| -> Value {
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["lva_number"] == lva && p["entitlement_tag"].as_str().unwrap().contains(tag)
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (_, list) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/licenses"),
            &admin,
            None,
        )
        .await;
    let advantage = position(&list, 1, "advantagek9");
    assert_eq!(
        (
            advantage["purchased"].as_i64(),
            advantage["in_use"].as_i64()
        ),
        (Some(100), Some(0)),
        "{list:#}"
    );
    let used = position(&list, 2, "advantagek9");
    assert_eq!(
        (
            used["purchased"].as_i64(),
            used["in_use"].as_i64(),
            used["shortfall"].as_i64()
        ),
        (Some(0), Some(3), Some(3)),
        "{list:#}"
    );

    // Move 5 to LVA 2: the shortfall is covered; never more than held.
    let transfer_path = format!("/api/v1/accounts/{a}/licenses/transfer");
    let transfer = |quantity: i64, from: i32, to: i32| {
        app.api(Method::POST, &transfer_path, &admin,
        Some(json!({ "entitlement_tag": ENTITLEMENT_TAG, "from_lva": from, "to_lva": to, "quantity": quantity })))
    };
    assert_eq!(transfer(5, 1, 2).await.0, 200);
    let (status, body) = transfer(6, 2, 1).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "insufficient_quantity"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holds 5")
    );
    assert_eq!(transfer(0, 1, 2).await.0, 422);
    assert_eq!(transfer(1, 1, 9).await.0, 404);
    let (_, list) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/licenses"),
            &admin,
            None,
        )
        .await;
    assert_eq!(position(&list, 1, "advantagek9")["purchased"], 95);
    let lva2 = position(&list, 2, "advantagek9");
    assert_eq!(
        (lva2["purchased"].as_i64(), lva2["shortfall"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(lva2["name"], "Catalyst 9300 Network Advantage");
    assert_eq!(
        app.count("SELECT count(*) FROM licenses WHERE quantity < 0")
            .await,
        0
    );

    // A later sync keeps the transfer: LVA 1 holds what CSSM lists minus what moved.
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (_, list) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/licenses"),
            &admin,
            None,
        )
        .await;
    assert_eq!(position(&list, 1, "advantagek9")["purchased"], 95);
    assert_eq!(position(&list, 2, "advantagek9")["purchased"], 5);
}

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_list_queries_use_indexes() {
    use outpost_db::inventory::{self, AlertFilter, InventoryQuery, SortKey};

    let app = TestApp::builder()
        .with_account("Acme")
        .with_account("Beta")
        .start()
        .await;
    // Enough rows that a sequential scan would be the planner's choice if no index served.
    app.execute(
        "INSERT INTO product_instances (id, account_id, lva_id, udi_pid, udi_serial_number, hostname, connect_method, host)
         SELECT gen_random_uuid(), a.id, l.id, 'C9300-24UX', a.name || lpad(i::text, 6, '0'), 'sw-' || i,
                CASE WHEN i % 20 = 0 THEN 'netconf' ELSE 'push' END, CASE WHEN i % 20 = 0 THEN '10.0.' || i END
         FROM local_accounts a JOIN local_virtual_accounts l ON l.account_id = a.id, generate_series(1, 30000) i",
    )
    .await;
    app.execute("ANALYZE product_instances").await;
    let account = app.account("Acme").await.id;
    let cases = [
        (
            "default list",
            InventoryQuery {
                limit: 50,
                ..InventoryQuery::default()
            },
            "product_instances_by_udi",
        ),
        (
            "by hostname",
            InventoryQuery {
                limit: 50,
                sort: SortKey::Hostname,
                descending: true,
                ..InventoryQuery::default()
            },
            "product_instances_by_hostname",
        ),
        (
            "by last contact",
            InventoryQuery {
                limit: 50,
                sort: SortKey::LastContact,
                ..InventoryQuery::default()
            },
            "product_instances_by_contact",
        ),
        (
            "with alerts",
            InventoryQuery {
                limit: 50,
                alert: Some(AlertFilter::Any),
                ..InventoryQuery::default()
            },
            "product_instances_alerted",
        ),
        (
            "netconf",
            InventoryQuery {
                limit: 50,
                connect_method: Some(outpost_db::enums::ConnectMethod::Netconf),
                ..InventoryQuery::default()
            },
            "product_instances_by_method",
        ),
        (
            "search",
            InventoryQuery {
                limit: 50,
                search: Some("Acme000123".into()),
                ..InventoryQuery::default()
            },
            "product_instances_search",
        ),
    ];
    // A page deep in, through the cursor the first page gives.
    let first = InventoryQuery {
        limit: 50,
        ..InventoryQuery::default()
    };
    let page = inventory::list(&mut *app.conn().await, account, &first)
        .await
        .unwrap();
    let cursor =
        inventory::Cursor::decode(page.next_cursor.as_deref().unwrap(), SortKey::Udi).unwrap();
    let mut cases = cases.to_vec();
    cases.push((
        "next page",
        InventoryQuery {
            limit: 50,
            cursor: Some(cursor),
            ..InventoryQuery::default()
        },
        "product_instances_by_udi",
    ));
    let mut conn = app.conn().await;
    for (name, query, index) in cases {
        let sql = inventory::list_sql(account, &query);
        let plan: Vec<PlanLine> =
            diesel_async::RunQueryDsl::load(sql.query("EXPLAIN "), &mut *conn)
                .await
                .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|l| l.line).collect();
        let text = plan.join("\n");
        assert!(
            !text.contains("Seq Scan on product_instances"),
            "{name}: sequential scan\n{text}"
        );
        assert!(text.contains(index), "{name}: {index} not used\n{text}");
    }
}
