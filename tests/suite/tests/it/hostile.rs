//! Hostile input against the running server: for every device and admin route, malformed and
//! oversized bodies, wrong content types, NUL and control characters and traversal strings in
//! path segments and query parameters, numbers at and beyond the edges of their types, deep
//! and wide documents, archive and XML bombs, header floods and slow senders. Every answer must
//! be a 4xx with the documented error body: never a 5xx, never a dropped connection, never a
//! panic; and the database must be as it was (but for the audit trail of what was refused).
//! The admin routes come from `/api/openapi.json`, which a unit test holds equal to the route
//! table, so a new route is walked too. The suite counts its cases.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outpost_pi_sim::Device;
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

/// Panics on the server's threads (actix names them `actix-*`); set by a hook once.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_server_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if name.starts_with("actix") {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Which error body an answer must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The admin API's envelope, `{"error": {"code", "message"}}`.
    Admin,
    /// The device protocol's answer: `status: FAILED` with a `message_code`.
    Device,
    /// A one-time URL of a pull: plain text.
    Text,
}

/// One hostile request.
struct Case {
    what: String,
    method: Method,
    url: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    token: bool,
    shape: Shape,
}

impl Case {
    fn admin(what: impl Into<String>, method: Method, url: String) -> Self {
        Self {
            what: what.into(),
            method,
            url,
            content_type: None,
            body: None,
            token: true,
            shape: Shape::Admin,
        }
    }

    fn with_body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body.into());
        self
    }
}

/// Path segments no route takes: NUL, CR LF, traversal, bad UTF-8, quotes, numbers beyond
/// every integer type, a very long one.
fn hostile_segments() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "%00".into()),
        ("NUL in the middle", "a%00b".into()),
        ("CR LF", "%0d%0aSet-Cookie:%20x=1".into()),
        ("traversal", "..%2F..%2Fetc%2Fpasswd".into()),
        ("dot segments", "%2e%2e%2f%2e%2e".into()),
        ("invalid UTF-8", "%ff%fe%fd".into()),
        ("quote", "'%20OR%201=1--".into()),
        ("beyond u64", "99999999999999999999999".into()),
        ("negative", "-2147483649".into()),
        ("5,000 characters", "A".repeat(5000)),
        ("double-encoded NUL", "%2500".into()),
    ]
}

/// Query values each parameter type refuses: NUL, control characters, overlong text, and for
/// numbers values beyond their type.
fn hostile_query_values(schema: &Value) -> Vec<(&'static str, String)> {
    let mut values = vec![
        ("NUL", "%00".into()),
        ("CR LF", "%0d%0a".into()),
        ("5,000 characters", "A".repeat(5000)),
    ];
    match schema["type"].as_str() {
        Some("integer") => values.extend([
            ("beyond i64", "9223372036854775808".to_owned()),
            ("below i64", "-9223372036854775809".into()),
            ("a float", "1e309".into()),
            ("not a number", "abc".into()),
        ]),
        Some("boolean") => values.push(("not a boolean", "maybe".into())),
        _ => {}
    }
    // At the edge of the type: a value the type holds but no parameter means. utoipa documents
    // u32 as int32 with a minimum of 0; only signed ones end at i32::MAX.
    let unsigned = !schema["minimum"].is_null();
    match (schema["format"].as_str(), unsigned) {
        (Some("int64"), _) => values.push(("i64::MAX", i64::MAX.to_string())),
        (Some("int32"), true) => values.push(("u32::MAX", u32::MAX.to_string())),
        (Some("int32"), false) => values.extend([
            ("i32::MAX", i32::MAX.to_string()),
            ("beyond i32", "2147483648".to_owned()),
        ]),
        _ => {}
    }
    values
}

/// A JSON body each route takes, to mutate: strings, numbers and the shape are then made
/// hostile one way at a time.
fn valid_body(method: &str, path: &str) -> Value {
    match (method, path) {
        ("post", "/api/v1/accounts") => {
            json!({ "name": "Hostile", "smart_account": "Acme Corp", "virtual_account": "Campus" })
        }
        ("patch", "/api/v1/accounts/{id}") => json!({ "name": "Renamed", "email": "a@b.example" }),
        ("post", "/api/v1/accounts/{id}/deactivate") => json!({ "reason": "hostile" }),
        ("put", "/api/v1/accounts/{id}/settings") => json!({ "reporting_interval_days": 30 }),
        ("post", "/api/v1/accounts/{id}/virtual-accounts") => json!({ "name": "Lab" }),
        ("patch", "/api/v1/accounts/{id}/virtual-accounts/{number}") => json!({ "name": "Lab" }),
        ("post", "/api/v1/accounts/{id}/product-instances") => {
            json!({ "udi_pid": "C9300-24UX", "udi_serial_number": "HOSTILE1", "port": 443, "lva": 1 })
        }
        ("post", "/api/v1/accounts/{id}/product-instances/transfer") => {
            json!({ "product_instance_ids": [], "to_lva": 1 })
        }
        ("post", "/api/v1/accounts/{id}/product-instances/remove") => {
            json!({ "product_instance_ids": [], "force": false })
        }
        ("post", "/api/v1/accounts/{id}/licenses/transfer") => json!({
            "entitlement_tag": "tag", "from_lva": 1, "to_lva": 2, "quantity": 1
        }),
        ("put", _) if path.contains("/schedules/") => {
            json!({ "enabled": true, "every_days": 3, "hour": 1, "minute": 0, "time_zone": "UTC" })
        }
        ("post", "/api/v1/accounts/{id}/pull") => json!({ "delay_secs": 0 }),
        ("put", "/api/v1/users/{id}/roles") => json!({ "system_role": "system_user" }),
        ("post", "/api/v1/users") => {
            json!({ "username": "mallory", "password": "long-enough-password" })
        }
        ("post", "/api/v1/accounts/{id}/webhooks") => json!({ "url": "https://hooks.example/" }),
        ("post", "/api/v1/auth/login") => json!({ "username": "admin", "password": "wrong" }),
        ("put", "/api/v1/settings") => json!({ "validate_device": false }),
        _ => json!({}),
    }
}

/// Replaces every leaf of `value` by `leaf(original)`.
fn mutate(value: &Value, leaf: &dyn Fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mutate(v, leaf)))
                .collect(),
        ),
        Value::Array(items) if items.is_empty() => json!([leaf(&json!("x"))]),
        Value::Array(items) => Value::Array(items.iter().map(|v| mutate(v, leaf)).collect()),
        other => leaf(other),
    }
}

/// Hostile JSON bodies for a route that reads one.
fn hostile_json_bodies(method: &str, path: &str) -> Vec<(String, &'static str, Vec<u8>)> {
    let valid = valid_body(method, path);
    let text = |v: Value| v.to_string().into_bytes();
    let strings = |replacement: Value| {
        mutate(&valid, &move |leaf| {
            if leaf.is_string() {
                replacement.clone()
            } else {
                leaf.clone()
            }
        })
    };
    let numbers = |replacement: &'static str| {
        let marked = mutate(&valid, &|leaf| {
            if leaf.is_number() {
                json!("__NUMBER__")
            } else {
                leaf.clone()
            }
        });
        marked
            .to_string()
            .replace("\"__NUMBER__\"", replacement)
            .into_bytes()
    };
    let json = "application/json";
    let mut bodies = vec![
        ("malformed".to_owned(), json, b"{\"name\": ".to_vec()),
        ("an array, not an object".into(), json, b"[]".to_vec()),
        ("a string, not an object".into(), json, b"\"x\"".to_vec()),
        (
            "an unknown field".into(),
            json,
            text(json!({ "zz_unknown": 1 })),
        ),
        (
            "nested 10,000 deep".into(),
            json,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        (
            "300,000 values wide".into(),
            json,
            format!("[{}0]", "0,".repeat(300_000)).into_bytes(),
        ),
        (
            "2 MiB".into(),
            json,
            format!("{{\"x\": \"{}\"}}", "a".repeat(2 << 20)).into_bytes(),
        ),
        (
            "JSON sent as text/plain".into(),
            "text/plain",
            text(valid.clone()),
        ),
        ("empty".into(), json, Vec::new()),
        ("NUL strings".into(), json, text(strings(json!("\u{0}")))),
        (
            "control characters".into(),
            json,
            text(strings(json!("\u{7}\u{1b}[2J"))),
        ),
        (
            "100,000-character strings".into(),
            json,
            text(strings(json!("x".repeat(100_000)))),
        ),
        ("strings as numbers".into(), json, text(strings(json!(12)))),
    ];
    for (what, number) in [
        ("numbers beyond u64", "18446744073709551616"),
        ("numbers below i64", "-9223372036854775809"),
        ("numbers as 1e400", "1e400"),
        ("numbers as floats", "1.5"),
    ] {
        bodies.push((what.into(), json, numbers(number)));
    }
    // A mutation that found nothing to change would be the valid body: not hostile. Neither is
    // no body where one may be left out ("Synchronise now" pulls every device then).
    let unchanged = text(valid.clone());
    bodies.retain(|(what, _, body)| {
        *body != unchanged && !(what == "empty" && path.ends_with("/pull"))
    });
    bodies
}

/// Writes a tar.gz of `members` (name, content).
fn tar_gz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    for (name, content) in members {
        let mut header = tar::Header::new_gnu();
        // Raw bytes: the tar crate would refuse to write a hostile name such as `../x`.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, content.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A gzip stream of `size` zero bytes (about a thousandth of it on the wire).
fn gzip_zeros(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// XML documents that are small on the wire and large (or refused) once read.
fn hostile_xml() -> Vec<(&'static str, Vec<u8>)> {
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
        <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
        <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\
        <smartLicense>&lol3;</smartLicense>";
    vec![
        ("billion laughs", laughs.as_bytes().to_vec()),
        (
            "an external entity",
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><smartLicense>&e;</smartLicense>".to_vec(),
        ),
        (
            "1,000,000 elements wide",
            format!("<smartLicense>{}</smartLicense>", "<a/>".repeat(1_000_000)).into_bytes(),
        ),
        (
            "nested 10,000 deep",
            format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000)).into_bytes(),
        ),
        ("not closed", b"<smartLicense><RUMReport><![CDATA[".to_vec()),
        ("not UTF-8", b"<smartLicense>\xff\xfe</smartLicense>".to_vec()),
    ]
}

/// Bodies for the file uploads (bundles, CSV, RUM files, registration responses).
fn hostile_uploads(path: &str) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut bodies: Vec<(String, &'static str, Vec<u8>)> = vec![
        ("empty".into(), "application/octet-stream", Vec::new()),
        (
            "random bytes".into(),
            "application/octet-stream",
            (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ];
    if path.ends_with("/ack-import") {
        let nested = tar_gz(&[(
            "ACK_UD_VA_x.tar.gz",
            tar_gz(&[("inner.tar.gz", tar_gz(&[("a.txt", b"x".to_vec())]))]),
        )]);
        bodies.extend([
            (
                "a 1 GiB gzip bomb".into(),
                "application/gzip",
                gzip_zeros(1 << 30),
            ),
            (
                "archives nested in archives".into(),
                "application/gzip",
                nested,
            ),
            (
                "a member named ../../etc/passwd".into(),
                "application/gzip",
                tar_gz(&[(
                    "ACK_UD_VA_x.tar.gz",
                    tar_gz(&[("../../etc/passwd", b"x".to_vec())]),
                )]),
            ),
            (
                "60,000 empty members".into(),
                "application/gzip",
                tar_gz(
                    &(0..60_000)
                        .map(|_| ("ACK_UD_VA_x.tar.gz", Vec::new()))
                        .collect::<Vec<_>>(),
                ),
            ),
        ]);
    }
    if path.ends_with("/import") || path.ends_with("/slac-import") {
        bodies.extend([
            (
                "a CSV of 1,000 columns".into(),
                "text/csv",
                format!("{}\n", vec!["c"; 1000].join(",")).into_bytes(),
            ),
            (
                "a header row only of NULs".into(),
                "text/csv",
                b"\0,\0,\0\n".to_vec(),
            ),
            (
                "rows with more cells than the header".into(),
                "text/csv",
                b"udi_pid,udi_serial_number\nC9300,S1,extra,extra\n".to_vec(),
            ),
            (
                "a CSV that is not UTF-8".into(),
                "text/csv",
                b"udi_pid\n\xff\xfe\n".to_vec(),
            ),
        ]);
    }
    if path.ends_with("/usage-files") || path.ends_with("/registration-response") {
        for (what, xml) in hostile_xml() {
            bodies.push((what.into(), "application/xml", xml));
        }
        bodies.push(("32 MiB of text".into(), "text/plain", vec![b'a'; 32 << 20]));
    }
    bodies
}

/// Every admin route's hostile cases, from the OpenAPI document.
async fn admin_cases(app: &TestApp, ids: &Ids) -> Vec<Case> {
    let (_, doc) = app.api(Method::GET, "/api/openapi.json", "", None).await;
    let mut cases = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let http = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = ids.fill(path);
            let url = format!("{}{concrete}", app.admin_base);
            let label = format!("{} {path}", method.to_uppercase());
            if path.starts_with("/api/v1/") && path != "/api/v1/auth/login" {
                cases.push(Case {
                    token: false,
                    ..Case::admin(format!("{label}: no token"), http.clone(), url.clone())
                });
            }
            for param in ["{id}", "{pi}", "{number}", "{webhook_id}"] {
                if !path.contains(param) {
                    continue;
                }
                for (what, segment) in hostile_segments() {
                    let url = format!(
                        "{}{}",
                        app.admin_base,
                        ids.fill(&path.replace(param, &segment))
                    );
                    cases.push(Case::admin(
                        format!("{label}: {param} {what}"),
                        http.clone(),
                        url,
                    ));
                }
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "query" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                for (what, value) in hostile_query_values(&parameter["schema"]) {
                    let url = format!("{url}?{name}={value}");
                    cases.push(Case::admin(
                        format!("{label}: ?{name} {what}"),
                        http.clone(),
                        url,
                    ));
                }
            }
            let Some(content) = operation["requestBody"]["content"].as_object() else {
                continue;
            };
            let bodies = if content.contains_key("application/json") {
                hostile_json_bodies(method, path)
            } else {
                hostile_uploads(path)
            };
            for (what, content_type, body) in bodies {
                cases.push(
                    Case::admin(format!("{label}: {what}"), http.clone(), url.clone())
                        .with_body(content_type, body),
                );
            }
        }
    }
    cases
}

/// Hostile cases of the device listener: tenant segments, bodies, XML, pull-drop tokens.
fn device_cases(app: &TestApp) -> Vec<Case> {
    let device = |what: String, url: String, content_type: &'static str, body: Vec<u8>| Case {
        what,
        method: Method::POST,
        url,
        content_type: Some(content_type),
        body: Some(body),
        token: false,
        shape: Shape::Device,
    };
    let tenant = format!("{}/cslu/v1/pi/Acme-1", app.device_base);
    let mut cases = Vec::new();
    let sender = Device::new("C9300-24UX", "FCWHOSTILE1");
    let valid =
        serde_json::to_value(sender.usage_request(vec![sender.clone().next_report()])).unwrap();
    for (what, segment) in hostile_segments() {
        let url = format!("{}/cslu/v1/pi/{segment}", app.device_base);
        cases.push(device(
            format!("tenant {what}"),
            url,
            "application/json",
            valid.to_string().into_bytes(),
        ));
        let url = format!("{}/pull-drop/{segment}/rum.xml", app.device_base);
        cases.push(Case {
            shape: Shape::Text,
            ..device(
                format!("pull-drop token {what}"),
                url,
                "application/xml",
                b"<smartLicense/>".to_vec(),
            )
        });
    }
    let data = |field: &str, value: Value| {
        let mut body = valid.clone();
        body["data"][field] = value;
        body.to_string().into_bytes()
    };
    let mut json_bodies: Vec<(String, Vec<u8>)> = hostile_json_bodies("post", "device")
        .into_iter()
        .filter(|(what, _, _)| what != "an unknown field" && what != "JSON sent as text/plain")
        .map(|(what, _, body)| (what, body))
        .collect();
    json_bodies.extend([
        ("an unknown message type".to_owned(), { let mut b = valid.clone(); b["message_type"] = json!("reboot"); b.to_string().into_bytes() }),
        ("no sudi".into(), data("sudi", Value::Null)),
        ("a NUL in the serial number".into(), data("sudi", json!({ "udi_pid": "C9300", "udi_serial_number": "A\u{0}B" }))),
        ("a 10,000-character serial".into(), data("sudi", json!({ "udi_pid": "C9300", "udi_serial_number": "S".repeat(10_000) }))),
        ("a usage list of numbers".into(), data("usage", json!([1, 2, 3]))),
        ("a report id beyond i64".into(), data("usage", json!([{ "payload": "{\"asset_identification\":{\"report_id\":18446744073709551615}}", "signature": {} }]))),
        ("a payload that is not JSON".into(), data("usage", json!([{ "payload": "{", "signature": {} }]))),
        ("20,000 reports".into(), data("usage", json!(vec![json!({ "payload": "{}" }); 20_000]))),
        ("a poll id that is no UUID".into(), { let mut b = valid.clone(); b["message_type"] = json!("result_poll"); b["data"]["poll_id"] = json!("../../x"); b.to_string().into_bytes() }),
        ("4 MiB (over the device limit)".into(), vec![b' '; 4 << 20]),
    ]);
    for (what, body) in json_bodies {
        cases.push(device(
            format!("device body: {what}"),
            tenant.clone(),
            "application/json",
            body,
        ));
    }
    for (what, xml) in hostile_xml() {
        cases.push(device(
            format!("device XML: {what}"),
            tenant.clone(),
            "application/xml",
            xml,
        ));
    }
    cases.push(device(
        "device body: JSON labelled XML".into(),
        tenant.clone(),
        "application/xml",
        valid.to_string().into_bytes(),
    ));
    cases.push(Case {
        method: Method::GET,
        ..device(
            "GET on the push URL".into(),
            tenant,
            "application/json",
            Vec::new(),
        )
    });
    cases
}

/// The ids a route's path takes, of real objects, so only the hostile part is wrong.
struct Ids {
    account: String,
    pi: String,
    webhook: String,
    user: String,
    job: String,
}

impl Ids {
    fn fill(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/users/") {
            &self.user
        } else if path.starts_with("/api/v1/jobs/") {
            &self.job
        } else {
            &self.account
        };
        path.replace("{id}", id)
            .replace("{pi}", &self.pi)
            .replace("{webhook_id}", &self.webhook)
            .replace("{number}", "1")
    }
}

/// Sends a case and checks the answer; returns a failure's description.
async fn check(http: &reqwest::Client, token: &str, case: Case) -> Result<(), String> {
    let mut request = http.request(case.method.clone(), &case.url);
    if case.token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = case.content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(body) = case.body {
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{}: no answer ({e})", case.what))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{}: the answer broke off ({e})", case.what))?;
    if !(400..500).contains(&status) {
        return Err(format!(
            "{}: answered {status}: {}",
            case.what,
            &text[..text.len().min(300)]
        ));
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let documented = match case.shape {
        Shape::Admin => body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        Shape::Device => body["status"] == "FAILED" && body["message_code"].is_string(),
        Shape::Text => !text.is_empty(),
    };
    if !documented {
        return Err(format!(
            "{}: {status} without the documented body: {}",
            case.what,
            &text[..text.len().min(300)]
        ));
    }
    Ok(())
}

/// A client that trusts the test app's CA.
fn client(app: &TestApp) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(
            outpost_core::tls::client_config(std::slice::from_ref(&app.ca_pem), false).unwrap(),
        )
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_and_slow_uploads_are_refused() {
    let app = TestApp::builder()
        .with_account("Acme")
        .with_settings(|s| s.admin.upload_timeout_secs = 2)
        .start()
        .await;
    let admin = app.admin_token().await;
    let http = client(&app);
    // 500 headers, or one of 64 KiB: refused by the HTTP layer before any handler runs.
    for url in [
        format!("{}/api/v1/accounts", app.admin_base),
        format!("{}/cslu/v1/pi/Acme-1", app.device_base),
    ] {
        let mut flood = http.post(&url).bearer_auth(&admin);
        for i in 0..500 {
            flood = flood.header(format!("x-flood-{i}"), "x");
        }
        let status = flood.send().await.map(|r| r.status().as_u16());
        assert!(matches!(status, Ok(400..=499)), "{url}: {status:?}");
        let huge = http
            .post(&url)
            .header("x-huge", "a".repeat(64 << 10))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert!(matches!(huge, Ok(400..=499)), "{url}: {huge:?}");
    }
    // An upload trickling in is cut off after admin.upload_timeout_secs with a 408.
    let account = app.account("Acme").await.id;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            if sender.send(Ok(b"udi_pid,".to_vec())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let body = reqwest::Body::wrap_stream(tokio_stream_from(receiver));
    let started = std::time::Instant::now();
    let answer = http
        .post(format!(
            "{}/api/v1/accounts/{account}/product-instances/import",
            app.admin_base
        ))
        .bearer_auth(&admin)
        .header("Content-Type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 408);
    let envelope: Value = answer.json().await.unwrap();
    assert_eq!(envelope["error"]["code"], "request_timeout", "{envelope}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    trickle.abort();
}

/// A stream of the chunks a channel receives.
fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_hostile_input_cleanly_and_changes_nothing() {
    count_server_panics();
    let app = TestApp::builder()
        .with_account("Acme")
        .with_settings(|s| {
            s.admin.max_upload_bytes = 64 << 20;
            s.admin.upload_timeout_secs = 3;
            s.device.max_body_bytes = 2 << 20;
        })
        .start()
        .await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id.to_string();
    let mut device = Device::new("C9300-24UX", "FCWHOSTILE0");
    app.push_next_report(&mut device, "Acme-1").await;
    let (_, hook) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/webhooks"),
            &admin,
            Some(json!({ "url": "https://hooks.example/x" })),
        )
        .await;
    let (_, sync) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/sync"),
            &admin,
            None,
        )
        .await;
    app.run_jobs().await;
    let (user, _) = app.user("someone", Some("system_user"), json!([])).await;
    let ids = Ids {
        pi: app
            .count_rows("SELECT id::text FROM product_instances")
            .await
            .remove(0),
        webhook: hook["id"].as_str().unwrap().to_owned(),
        job: sync["job_id"].as_str().unwrap().to_owned(),
        user,
        account,
    };
    let mut cases = admin_cases(&app, &ids).await;
    let admin_count = cases.len();
    cases.extend(device_cases(&app));
    let device_count = cases.len() - admin_count;

    // Refusals are audited: failed logins and refused devices in the events, refused ACK
    // bundles as `failed` rows of the sync ledger. The rest of the database must not change.
    let audited = ["events", "sync_runs"];
    let ledger = "SELECT count(*) FROM sync_runs WHERE state <> 'failed'";
    let (before, ledger_before) = (app.fingerprint(&audited).await, app.count(ledger).await);
    let http = client(&app);
    let total = cases.len();
    let failures: Vec<String> =
        futures_util::StreamExt::collect::<Vec<_>>(futures_util::StreamExt::buffer_unordered(
            futures_util::stream::iter(cases.into_iter().map(|case| check(&http, &admin, case))),
            4,
        ))
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    println!("hostile input: {total} cases ({admin_count} admin, {device_count} device)");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 300, "only {total} cases");
    assert_eq!(
        app.count(ledger).await,
        ledger_before,
        "a refused import succeeded"
    );
    let after = app.fingerprint(&audited).await;
    let changed: Vec<&String> = after.iter().filter(|t| !before.contains(t)).collect();
    assert!(
        changed.is_empty(),
        "a refused request changed something: {changed:?}"
    );
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked"
    );
}
