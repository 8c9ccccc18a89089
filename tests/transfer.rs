//! Export and import: every site's count, hours and pages out, as JSON
//! (and CSV without pages); in again, whatever the size up to
//! TALLY_MAX_IMPORT_BYTES, hours replayed on request, pages as they were,
//! on SQLite and PostgreSQL; a bad document writes nothing.

mod support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TallyProcess, TestApp, call, json_of, listed_counts, sqlite_url};
use support::pg::PgServer;
use tally::domain::{Page, Slug};
use tally::store::{Limits, SiteHits, Store};
use tower::ServiceExt;

/// 2026-01-10T05:00:00Z
const HOUR: u64 = 1_768_021_200;

/// Site `blog` ("Blog, \"mine\"") with a base of 10 and 3 + 2 hits in two hours.
async fn with_blog(r: &TestApp) {
    let body = json!({ "slug": "blog", "name": "Blog, \"mine\"", "count": 10 }).to_string();
    let got = call(r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(&body)).await;
    assert_eq!(got.0, StatusCode::CREATED);
    let store = &r.store;
    let blog = Slug::parse("blog").unwrap();
    let id = store.site(&blog).await.unwrap().unwrap().id;
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    store
        .add_anonymous_hits(at(HOUR), &[(id, 3)])
        .await
        .unwrap();
    store
        .add_anonymous_hits(at(HOUR + 7200), &[(id, 2)])
        .await
        .unwrap();
}

async fn counts(r: &Router) -> Vec<(String, i64)> {
    let got = call(r, Method::GET, "/api/v1/sites", Some(TOKEN), None).await;
    listed_counts(&json_of(&got.2)["sites"], "slug")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn export_json_holds_counts_bases_and_hours() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let (status, headers, body) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let mut body = json_of(&body);
    assert!(body["exported_at"].as_str().unwrap().ends_with('Z'));
    for site in body["sites"].as_array_mut().unwrap() {
        site.as_object_mut()
            .unwrap()
            .remove("created_at")
            .expect("created_at");
    }
    assert_eq!(
        body["sites"],
        json!([
            {"slug": "default", "name": "default", "count": 0, "base_count": 0, "hourly": [],
             "pages": [], "breakdowns": []},
            {"slug": "blog", "name": "Blog, \"mine\"", "count": 15, "base_count": 10, "hourly": [
                {"t": "2026-01-10T05:00:00Z", "hits": 3},
                {"t": "2026-01-10T07:00:00Z", "hits": 2},
            ], "pages": [], "breakdowns": []},
        ])
    );
}

#[tokio::test]
async fn export_csv_is_exact_and_each_site_adds_up() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let (status, headers, body) = call(
        &r,
        Method::GET,
        "/api/v1/export?format=csv",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        body,
        "site,name,count,t,hits\n\
         default,default,0,,0\n\
         blog,\"Blog, \"\"mine\"\"\",15,,10\n\
         blog,\"Blog, \"\"mine\"\"\",15,2026-01-10T05:00:00Z,3\n\
         blog,\"Blog, \"\"mine\"\"\",15,2026-01-10T07:00:00Z,2\n"
    );
}

#[tokio::test]
async fn export_and_import_are_admin_actions() {
    let r = TestApp::sqlite(&[]).await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/export", None),
        (
            Method::POST,
            "/api/v1/import",
            Some(r#"[{"slug":"a","count":1}]"#),
        ),
    ] {
        let got = call(&r, method.clone(), path, None, body).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{path}");
        let got = call(&r, method, path, Some("wrong"), body).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(counts(&r).await, vec![("default".to_owned(), 0)]);
    let got = call(
        &r,
        Method::GET,
        "/api/v1/export?format=xml",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn import_sets_counts_and_creates_missing_sites() {
    let r = TestApp::sqlite(&[]).await;
    let state = r.state.clone();
    with_blog(&r).await;
    let body = r#"[{"slug":"blog","count":1000},{"slug":"docs","count":7,"name":"Docs"},{"slug":"default","count":3}]"#;
    let (status, _, reply) =
        call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        json_of(&reply),
        json!({"imported": [
            {"slug": "blog", "count": 1000, "created": false},
            {"slug": "docs", "count": 7, "created": true},
            {"slug": "default", "count": 3, "created": false},
        ]})
    );
    assert_eq!(
        counts(&r).await,
        vec![
            ("default".to_owned(), 3),
            ("blog".to_owned(), 1000),
            ("docs".to_owned(), 7)
        ]
    );
    // Blog keeps its hours; the base takes the rest.
    let dump = state.counting.transfer.export().await.unwrap();
    assert_eq!(dump[1].base_count, 995);
    assert_eq!(dump[1].buckets.len(), 2);
    assert_eq!(dump[2].site.name, "Docs");
    assert_eq!(dump[2].base_count, 7);
    // A new site counts hits on top of its imported count.
    let (_, _, hit) = call(&r, Method::POST, "/api/v1/sites/docs/hits", None, None).await;
    assert_eq!(json_of(&hit)["count"], 8);
}

#[tokio::test]
async fn an_export_imports_into_a_fresh_instance() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let (_, _, export) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    let fresh = TestApp::sqlite(&[]).await;
    let (status, _, reply) = call(
        &fresh,
        Method::POST,
        "/api/v1/import",
        Some(TOKEN),
        Some(&export),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(counts(&fresh).await, counts(&r).await);
    let (_, _, site) = call(&fresh, Method::GET, "/api/v1/sites/blog", Some(TOKEN), None).await;
    assert_eq!(json_of(&site)["name"], "Blog, \"mine\"");
}

#[tokio::test]
async fn a_bad_entry_anywhere_writes_nothing() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let before = counts(&r).await;
    for body in [
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":-1}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"Bad Slug","count":1}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"new1","count":6}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":9007199254740992}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":1.5}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog"}]"#,
        r#"[{"slug":"new1","count":5,"colour":"red"}]"#,
        r#"[{"slug":"new1","count":5,"name":"a\nb"}]"#,
        r#"{"sites":[{"slug":"new1","count":5}],"extra":1}"#,
        r#"[]"#,
        r#"42"#,
        r#"[{"slug":"new1","count":5}"#,
    ] {
        let (status, headers, reply) =
            call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(json_of(&reply)["error"]["message"].as_str().is_some());
    }
    assert_eq!(counts(&r).await, before);
}

#[tokio::test]
async fn imports_may_be_larger_than_other_bodies() {
    let r = TestApp::sqlite(&[]).await;
    let sites: Vec<Value> = (0..2000)
        .map(|i| json!({ "slug": format!("site-{i:04}"), "count": i, "name": "x".repeat(20) }))
        .collect();
    let body = Value::Array(sites).to_string();
    assert!(body.len() > 16 * 1024);
    let (status, _, reply) =
        call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{}", &reply[..reply.len().min(300)]);
    let all = counts(&r).await;
    assert_eq!(all.len(), 2001);
    assert_eq!(all[2000], ("site-1999".to_owned(), 1999));
    // Other routes keep the small limit.
    let big = json!({ "slug": "x", "name": "y".repeat(20_000) }).to_string();
    let (status, _, _) = call(&r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The start of the current UTC hour, unix seconds.
fn this_hour() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % 3600
}

fn timestamp(unix: u64) -> String {
    tally::domain::time::format_timestamp(unix as i64)
}

/// Hits of site `i` in its hour `h`.
fn hits_at(i: usize, h: usize) -> u64 {
    1 + ((i * 7 + h * 3) % 11) as u64
}

/// An export as export writes it: the default site (count 0), then
/// `sites` sites `site-00000`… each with base count `i` and `hours`
/// consecutive hours ending with the current one, created `i` seconds into
/// 2026.
fn export_document(sites: usize, hours: usize) -> String {
    let first = this_hour() - 3600 * (hours as u64 - 1);
    let mut out = String::from(r#"{"exported_at":"2026-11-30T10:00:00Z","sites":["#);
    out.push_str(r#"{"slug":"default","name":"default","count":0,"base_count":0,"created_at":"2026-01-01T00:00:00Z","hourly":[],"pages":[],"breakdowns":[]}"#);
    for i in 0..sites {
        let sum: u64 = (0..hours).map(|h| hits_at(i, h)).sum();
        let _ = write!(
            out,
            r#",{{"slug":"site-{i:05}","name":"Site \"{i}\"","count":{},"base_count":{i},"created_at":"{}","hourly":["#,
            i as u64 + sum,
            timestamp(1_767_225_600 + i as u64)
        );
        for h in 0..hours {
            if h > 0 {
                out.push(',');
            }
            let t = timestamp(first + 3600 * h as u64);
            let _ = write!(out, r#"{{"t":"{t}","hits":{}}}"#, hits_at(i, h));
        }
        out.push_str(r#"],"pages":[],"breakdowns":[]}"#);
    }
    out.push_str("]}");
    out
}

/// An export's sites, without the default site's creation time: an import
/// finds that site already there, created with the database.
fn sites_of(export: &str) -> Vec<Value> {
    let mut doc = json_of(export);
    let sites = doc["sites"].as_array_mut().expect("sites");
    for site in sites.iter_mut().filter(|s| s["slug"] == "default") {
        site.as_object_mut().unwrap().remove("created_at");
    }
    std::mem::take(sites)
}

/// Equal site by site, so that a difference names its site.
fn assert_same_sites(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "number of sites");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "site {}", w["slug"]);
    }
}

async fn import(r: &Router, query: &str, body: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/import{query}");
    let (status, headers, reply) = call(r, Method::POST, &path, Some(TOKEN), Some(body)).await;
    assert_eq!(headers["content-type"], "application/json", "{reply}");
    (status, json_of(&reply))
}

async fn export_sites(r: &Router) -> Vec<Value> {
    let (status, _, body) = call(r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    sites_of(&body)
}

/// 10 022 sites with two hours each, replayed into an empty tally: its
/// export is the document, site for site.
async fn ten_thousand_sites_import_into_an_empty_tally(database_url: &str) {
    let r = TestApp::spawn(database_url, &[]).await;
    let doc = export_document(10_022, 2);
    let started = Instant::now();
    let (status, reply) = import(&r, "?hours=replay", &doc).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{reply}");
    let imported = reply["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 10_023);
    let created = imported.iter().filter(|s| s["created"] == true).count();
    assert_eq!(created, 10_022);
    assert_eq!(
        imported[10_022],
        json!({"slug": "site-10021", "count": 10_021 + hits_at(10_021, 0) + hits_at(10_021, 1), "created": true})
    );
    assert_same_sites(&export_sites(&r).await, &sites_of(&doc));
    println!("imported 10 022 sites ({} bytes) in {took:?}", doc.len());
}

with_both_databases!(ten_thousand_sites_import_into_an_empty_tally);

/// 25 sites with 400 days of hours (a 9.3 MB export) through a real
/// listener: replayed, every hour is kept and each site's daily series is
/// the document's.
async fn four_hundred_days_of_hours_are_replayed(database_url: &str) {
    let app = TestApp::spawn(database_url, &[]).await;
    let hours = 400 * 24;
    let doc = export_document(25, hours);
    assert!(doc.len() > 9_000_000, "{} bytes", doc.len());
    let client = reqwest::Client::new();
    let send = |body: String| {
        client
            .post(app.url("/api/v1/import?hours=replay"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let started = Instant::now();
    let reply = send(doc.clone()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status(), 200);
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["imported"].as_array().unwrap().len(), 26);
    let export = || async {
        let reply = client.get(app.url("/api/v1/export")).bearer_auth(TOKEN);
        reply.send().await.unwrap().text().await.unwrap()
    };
    assert_same_sites(&sites_of(&export().await), &sites_of(&doc));
    // The series, per day over the 400 days, as the dashboard reads it.
    let first = this_hour() - 3600 * (hours as u64 - 1);
    let (from, to) = (first - first % 86_400, this_hour() + 3600);
    for i in [0, 13, 24] {
        let url = app.url(&format!(
            "/api/v1/sites/site-{i:05}/series?step=day&from={}&to={}",
            timestamp(from),
            timestamp(to)
        ));
        let series = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
        let series: Value = series.json().await.unwrap();
        assert_eq!(series["before"], i as u64, "site {i}");
        let points = series["points"].as_array().unwrap();
        let mut want = vec![0u64; points.len()];
        for h in 0..hours {
            want[((first + 3600 * h as u64 - from) / 86_400) as usize] += hits_at(i, h);
        }
        let got: Vec<u64> = points.iter().map(|p| p["hits"].as_u64().unwrap()).collect();
        assert_eq!(got, want, "site {i}");
    }
    // The same document again changes nothing: an import sets, it never adds.
    assert_eq!(send(doc.clone()).await.unwrap().status(), 200);
    assert_same_sites(&sites_of(&export().await), &sites_of(&doc));
    println!(
        "replayed {} hours ({} bytes) in {took:?}",
        25 * hours,
        doc.len()
    );
}

with_both_databases!(four_hundred_days_of_hours_are_replayed);

/// Hits on a site outside a 9 MB import keep being counted while it is
/// written: each waits for one batch at most, never for the whole import.
async fn hits_are_answered_during_a_large_import(database_url: &str) {
    let app = TestApp::spawn(database_url, &[]).await;
    let client = reqwest::Client::new();
    let live = json!({ "slug": "live" }).to_string();
    let created = client
        .post(app.url("/api/v1/sites"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(live)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // What a hit takes here and now, with no import.
    let url = app.url("/api/v1/sites/live/hits");
    let mut before = Vec::new();
    for _ in 0..50 {
        before.push(support::load::send(&client, Method::POST, &url).await);
    }
    assert_eq!(support::load::count_200(&before), before.len());
    let baseline = before.iter().map(|o| o.latency).max().unwrap();
    let doc = export_document(25, 400 * 24);
    let importing = async {
        let started = Instant::now();
        let imported = client
            .post(app.url("/api/v1/import?hours=replay"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(doc)
            .send()
            .await;
        (imported, started.elapsed())
    };
    let hitting = async {
        let mut outcomes = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            outcomes.push(support::load::send(&client, Method::POST, &url).await);
        }
        outcomes
    };
    let ((imported, import_took), outcomes) = tokio::join!(importing, hitting);
    assert_eq!(imported.unwrap().status(), 200);
    let statuses = support::load::statuses(&outcomes);
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        vec![&200],
        "{statuses:?}"
    );
    // The import is written in a dozen batches: a hit may wait behind one
    // of them, not behind the whole import.
    let slowest = outcomes.iter().map(|o| o.latency).max().unwrap();
    let bound = baseline * 4 + import_took / 4;
    assert!(
        slowest < bound,
        "a hit took {slowest:?}, beyond {bound:?}: the import took {import_took:?}, \
         a hit before it at most {baseline:?}"
    );
    let count = client
        .get(app.url("/api/v1/sites/live/count"))
        .send()
        .await
        .unwrap();
    let count: Value = count.json().await.unwrap();
    assert_eq!(count["count"], before.len() + outcomes.len());
    println!(
        "{} hits during the import of {import_took:?}, the slowest in {slowest:?} \
         (before it {baseline:?})",
        outcomes.len()
    );
}

with_both_databases!(hits_are_answered_during_a_large_import);

#[tokio::test]
async fn an_export_imports_into_a_fresh_instance_with_its_hours() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let (_, _, export) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    let fresh = TestApp::sqlite(&[]).await;
    let (status, reply) = import(&fresh, "?hours=replay", &export).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(export_sites(&fresh).await, sites_of(&export));
    // Without a replay, the hours land in the base count.
    let plain = TestApp::sqlite(&[]).await;
    assert_eq!(import(&plain, "", &export).await.0, StatusCode::OK);
    let blog = &export_sites(&plain).await[1];
    assert_eq!(
        (&blog["count"], &blog["base_count"], &blog["hourly"]),
        (&json!(15), &json!(15), &json!([]))
    );
}

#[tokio::test]
async fn reimporting_10_000_existing_sites_on_postgres_succeeds_within_the_store_timeout() {
    let pg = PgServer::start();
    let r = TestApp::spawn(&pg.create_database(), &["--store-timeout", "2s"]).await;
    let list = |plus: i64| {
        let sites: Vec<Value> = (0..10_000)
            .map(|i| json!({ "slug": format!("s-{i:05}"), "count": i + plus }))
            .collect();
        Value::Array(sites).to_string()
    };
    assert_eq!(import(&r, "", &list(0)).await.0, StatusCode::OK);
    let started = Instant::now();
    let (status, reply) = import(&r, "", &list(5)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{reply}");
    let imported = reply["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 10_000);
    assert!(imported.iter().all(|s| s["created"] == false));
    let all = counts(&r).await;
    assert_eq!(all.len(), 10_001);
    for (i, (slug, count)) in all[1..].iter().enumerate() {
        assert_eq!(
            (slug.as_str(), *count),
            (format!("s-{i:05}").as_str(), i as i64 + 5)
        );
    }
    println!("re-imported 10 000 existing sites in {took:?}");
}

/// The store fails in the second batch (a trigger refuses site 700 with
/// PostgreSQL's disk-full error): the first batch of 500 sites stays, the
/// answer says so, and the same import again finishes the job.
#[tokio::test]
async fn an_import_cut_short_by_the_store_says_what_it_kept_and_a_rerun_finishes_it() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let r = TestApp::spawn(&url, &[]).await;
    pg.psql(
        &db,
        "CREATE FUNCTION refuse_700() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.slug = 'site-00700' THEN RAISE EXCEPTION 'no room' USING ERRCODE = '53100'; \
         END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_700 BEFORE INSERT ON visitors \
         FOR EACH ROW EXECUTE FUNCTION refuse_700();",
    );
    let doc = export_document(1200, 3);
    let (status, reply) = import(&r, "?hours=replay", &doc).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply,
        json!({"error": {"code": "import_incomplete", "message":
            "the database failed after the first 500 of 1201 sites were imported; send the \
             same document again to finish (an import sets counts, it never adds to them)"}})
    );
    let kept = export_sites(&r).await;
    assert_same_sites(&kept, &sites_of(&doc)[..500]);
    pg.psql(&db, "DROP TRIGGER refuse_700 ON visitors");
    let (status, reply) = import(&r, "?hours=replay", &doc).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let created = reply["imported"].as_array().unwrap();
    assert_eq!(created.iter().filter(|s| s["created"] == true).count(), 701);
    assert_same_sites(&export_sites(&r).await, &sites_of(&doc));
}

#[tokio::test]
async fn an_import_past_the_limit_is_413_naming_the_setting_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &["--max-import-bytes", "4096"]).await;
    let sites = |n: usize| {
        let list: Vec<Value> = (0..n)
            .map(|i| json!({ "slug": format!("site-{i:04}"), "count": i }))
            .collect();
        Value::Array(list).to_string()
    };
    let (small, big) = (sites(100), sites(200));
    assert!(small.len() <= 4096 && big.len() > 4096);
    let (status, reply) = import(&r, "", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply,
        json!({"error": {"code": "body_too_large",
            "message": "an import is at most 4096 bytes (TALLY_MAX_IMPORT_BYTES)"}})
    );
    // Sent in chunks with no Content-Length, it is cut off as it arrives.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let request = Request::post("/api/v1/import")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let response = r.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        json_of(std::str::from_utf8(&body).unwrap())["error"]["code"],
        "body_too_large"
    );
    assert_eq!(counts(&r).await, vec![("default".to_owned(), 0)]);
    // Up to the limit, it is taken.
    assert_eq!(import(&r, "", &small).await.0, StatusCode::OK);
    assert_eq!(counts(&r).await.len(), 101);
}

#[tokio::test]
async fn malformed_and_duplicate_key_documents_are_400_and_write_nothing() {
    let r = TestApp::sqlite(&[]).await;
    with_blog(&r).await;
    let before = export_sites(&r).await;
    let h = |t: &str, hits: i64| format!(r#"{{"t":"{t}","hits":{hits}}}"#);
    let site = |hourly: &str| format!(r#"{{"slug":"new1","count":9,"hourly":[{hourly}]}}"#);
    let (h1, h2) = (h("2026-01-10T05:00:00Z", 2), h("2026-01-10T06:00:00Z", 3));
    // Valid up to its last site, which is cut off: nothing is written.
    let mut truncated = export_document(3000, 1);
    truncated.truncate(truncated.len() - 40);
    let cases: Vec<(&str, String)> = vec![
        (
            "",
            r#"{"sites":[{"slug":"new1","count":5}],"sites":[]}"#.into(),
        ),
        (
            "",
            r#"{"exported_at":"x","exported_at":"y","sites":[]}"#.into(),
        ),
        ("", r#"[{"slug":"new1","slug":"new2","count":5}]"#.into()),
        ("", r#"[{"slug":"new1","count":5,"count":6}]"#.into()),
        (
            "",
            r#"[{"slug":"new1","count":5,"name":"a","name":"b"}]"#.into(),
        ),
        (
            "?hours=replay",
            r#"[{"slug":"new1","count":9,"hourly":[{"t":"2026-01-10T05:00:00Z","t":"2026-01-10T06:00:00Z","hits":1}]}]"#
                .into(),
        ),
        ("", r#"[["new1",5]]"#.into()),
        ("", r#"{"sites":[["new1",5]]}"#.into()),
        ("", r#"{"sites":{"slug":"new1","count":5}}"#.into()),
        (
            "",
            r#"[{"slug":"new1","count":5,"hourly":[["2026-01-10T05:00:00Z",1]]}]"#.into(),
        ),
        (
            "",
            r#"[{"slug":"new1","count":5,"hourly":{"t":"2026-01-10T05:00:00Z","hits":1}}]"#.into(),
        ),
        (
            "",
            r#"[{"slug":"new1","count":5,"hourly":[{"t":"yesterday","hits":1}]}]"#.into(),
        ),
        ("", r#"[{"slug":"new1","count":5,"created_at":[]}]"#.into()),
        ("", r#"[{"slug":"new1","count":5,"created_at":"last week"}]"#.into()),
        (
            "?hours=replay",
            format!("[{}]", site(&format!("{h2},{h1}"))),
        ),
        (
            "?hours=replay",
            format!("[{}]", site(&format!("{h1},{h1}"))),
        ),
        (
            "?hours=replay",
            format!("[{}]", site(&h("2026-01-10T05:30:00Z", 1))),
        ),
        (
            "?hours=replay",
            format!("[{}]", site(&h("2026-01-10T05:00:00Z", 0))),
        ),
        (
            "?hours=replay",
            format!("[{}]", site(&h("2026-01-10T05:00:00Z", 10))),
        ),
        (
            "?hours=replay",
            format!(r#"[{{"slug":"new1","count":9,"base_count":5,"hourly":[{h1}]}}]"#),
        ),
        (
            "?hours=replay",
            format!(
                r#"[{{"slug":"blog","count":9}},{}]"#,
                site(&h1).replace("new1", "Bad")
            ),
        ),
        ("?hours=sometimes", r#"[{"slug":"new1","count":5}]"#.into()),
        (
            "",
            r#"[{"slug":"new1","count":5}] [{"slug":"new2","count":5}]"#.into(),
        ),
        ("", truncated),
    ];
    for (query, body) in &cases {
        let (status, reply) = import(&r, query, body).await;
        let shown = &body[..body.len().min(200)];
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query} {shown}: {reply}");
        assert!(reply["error"]["message"].as_str().is_some(), "{reply}");
    }
    assert_eq!(export_sites(&r).await, before);
}

/// Peak memory of a real tally process while it takes a 37 MB export: the
/// body is parsed as it arrives and never held, so the peak grows by about
/// half the body's size (the parsed hours, 16 bytes each, against 38 bytes
/// of JSON), where a buffered body and its parsed tree would be several
/// times the body.
#[tokio::test]
async fn an_import_is_parsed_as_it_arrives_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url)]);
    let doc = export_document(100, 400 * 24);
    let before = tally.memory_kib("VmHWM");
    let reply = reqwest::Client::new()
        .post(tally.url("/api/v1/import?hours=replay"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let peak = tally.memory_kib("VmHWM");
    let grew = (peak - before) * 1024;
    println!(
        "a {} byte import: peak RSS {before} KiB before, {peak} KiB during (+{grew} bytes, {:.2} of the body)",
        doc.len(),
        grew as f64 / doc.len() as f64
    );
    assert!(
        grew < doc.len() as u64 * 7 / 10,
        "{grew} bytes for a {} byte body",
        doc.len()
    );
}

/// The date `days` days before the current hour's, as the API writes it.
fn date_before(days: u64) -> String {
    tally::domain::time::format_date((this_hour() - days * 86_400) as i64)
}

/// Page hits on `site` in the hour `hour`, straight to the store, with a
/// page limit of 2.
async fn page_hits(store: &Arc<dyn Store>, hour: u64, sites: &[(i64, &[&str])]) {
    let hits: Vec<SiteHits> = sites
        .iter()
        .map(|(site, pages)| SiteHits {
            site: *site,
            keys: vec![None; pages.len()],
            pages: pages
                .iter()
                .map(|p| Some(Page::parse(p, &Default::default()).unwrap()))
                .collect(),
            ..SiteHits::default()
        })
        .collect();
    let at = UNIX_EPOCH + Duration::from_secs(hour);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let outcomes = store
        .add_hits(at, &hits, Limits::pages(2), deadline)
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| o.counted().is_some()),
        "{outcomes:?}"
    );
}

/// Sites `blog` and `docs` with pages hit over three days, on an app with
/// a page limit of 2: blog's /a and /b are pages, its /c, /d and /e land
/// on `(other)`, and two of its hits name no page.
async fn with_pages(app: &TestApp) -> Router {
    let r = app.router();
    for body in [
        r#"{"slug":"blog","name":"Blog, \"mine\""}"#,
        r#"{"slug":"docs"}"#,
    ] {
        let got = call(&r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(body)).await;
        assert_eq!(got.0, StatusCode::CREATED, "{}", got.2);
    }
    let id = |slug: &str| {
        let store = app.store.clone();
        let slug = Slug::parse(slug).unwrap();
        async move { store.site(&slug).await.unwrap().unwrap().id }
    };
    let (blog, docs) = (id("blog").await, id("docs").await);
    let store = &app.store;
    let now = this_hour();
    page_hits(store, now - 2 * 86_400, &[(blog, &["/a", "/a", "/b"])]).await;
    page_hits(
        store,
        now - 86_400,
        &[(blog, &["/a", "/c", "/b", "/d"]), (docs, &["/x"])],
    )
    .await;
    page_hits(store, now, &[(blog, &["/a"])]).await;
    for body in [Some(r#"{"page":"/e"}"#), None, None] {
        let got = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, body).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    }
    r
}

/// A site's JSON, as the admin reads it.
async fn site_json(r: &Router, slug: &str) -> Value {
    let path = format!("/api/v1/sites/{slug}");
    let (status, _, body) = call(r, Method::GET, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json_of(&body)
}

/// A site's pages list over the last three days, as JSON (read with the
/// admin token: a site's details are private unless it is public).
async fn pages_json(r: &Router, slug: &str) -> Value {
    let path = format!(
        "/api/v1/sites/{slug}/pages?limit=1000&from={}&to={}",
        date_before(2),
        tally::domain::time::format_date(this_hour() as i64 + 86_400)
    );
    let (status, _, body) = call(r, Method::GET, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json_of(&body)
}

/// A page's daily hits over the last three days, as JSON (with the admin
/// token).
async fn page_days(r: &Router, slug: &str, page: &str) -> Value {
    let path = format!(
        "/api/v1/sites/{slug}/series?page={page}&step=day&from={}&to={}",
        date_before(2),
        tally::domain::time::format_date(this_hour() as i64 + 86_400)
    );
    let (status, _, body) = call(r, Method::GET, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json_of(&body)
}

/// A site's pages as `{page: count}` (with the admin token).
async fn page_counts(r: &Router, slug: &str) -> Vec<(String, i64)> {
    let path = format!("/api/v1/sites/{slug}/pages?limit=1000");
    let (status, _, body) = call(r, Method::GET, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut pages: Vec<(String, i64)> = listed_counts(&json_of(&body)["pages"], "page")
        .into_iter()
        .collect();
    pages.sort();
    pages
}

fn owned(pages: &[(&str, i64)]) -> Vec<(String, i64)> {
    pages.iter().map(|(p, n)| (p.to_string(), *n)).collect()
}

/// A hit on a page that site `blog` does not have, which has as many pages
/// as the limit: it counts on `(other)`, the site then at `count` and
/// `(other)` at `page_count`.
async fn a_new_page_counts_on_other(r: &Router, count: i64, page_count: i64) {
    let (status, _, body) = call(
        r,
        Method::POST,
        "/api/v1/sites/blog/hits",
        None,
        Some(r#"{"page":"/new"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"site": "blog", "count": count, "page": "(other)", "page_count": page_count})
    );
}

/// An export with pages, the overflow page among them, imported into an
/// empty tally (replayed, and not): the same sites, counts, pages, page
/// counts, page days and page totals, and the page limit still holds.
async fn pages_survive_an_export_and_an_import(urls: [String; 3]) {
    let old = TestApp::spawn(&urls[0], &["--page-limit", "2"]).await;
    let r = with_pages(&old).await;
    let (status, _, export) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let sites = sites_of(&export);
    let (d2, d1, d0) = (date_before(2), date_before(1), date_before(0));
    assert_eq!(
        (&sites[1]["slug"], &sites[1]["count"], &sites[1]["pages"]),
        (
            &json!("blog"),
            &json!(11),
            &json!([
                {"page": "(other)", "count": 3, "daily": [
                    {"d": d1, "hits": 2}, {"d": d0, "hits": 1}]},
                {"page": "/a", "count": 4, "daily": [
                    {"d": d2, "hits": 2}, {"d": d1, "hits": 1}, {"d": d0, "hits": 1}]},
                {"page": "/b", "count": 2, "daily": [
                    {"d": d2, "hits": 1}, {"d": d1, "hits": 1}]},
            ])
        )
    );
    assert_eq!(
        (&sites[2]["slug"], &sites[2]["count"], &sites[2]["pages"]),
        (
            &json!("docs"),
            &json!(1),
            &json!([{"page": "/x", "count": 1, "daily": [{"d": d1, "hits": 1}]}])
        )
    );
    assert_eq!(sites[0]["pages"], json!([]));

    let fresh = TestApp::spawn(&urls[1], &["--page-limit", "2"]).await;
    let f = fresh.router();
    let (status, reply) = import(&f, "?hours=replay", &export).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_same_sites(&export_sites(&f).await, &sites);
    for slug in ["blog", "docs"] {
        assert_eq!(
            site_json(&f, slug).await,
            site_json(&r, slug).await,
            "{slug}"
        );
        assert_eq!(
            pages_json(&f, slug).await,
            pages_json(&r, slug).await,
            "{slug}"
        );
    }
    assert_eq!(site_json(&f, "blog").await["pages"], 2);
    assert_eq!(site_json(&f, "docs").await["pages"], 1);
    assert_eq!(
        pages_json(&f, "blog").await["pages"],
        json!([
            {"page": "/a", "count": 4, "hits": 4},
            {"page": "(other)", "count": 3, "hits": 3},
            {"page": "/b", "count": 2, "hits": 2},
        ])
    );
    // (The overflow page has no series of its own: its days are compared
    // in the exports above.)
    for page in ["/a", "/b"] {
        let days = page_days(&f, "blog", page).await;
        assert_eq!(days, page_days(&r, "blog", page).await, "{page}");
        let hits: Vec<i64> = days["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["hits"].as_i64().unwrap())
            .collect();
        let want = if page == "/a" {
            vec![2, 1, 1]
        } else {
            vec![1, 1, 0]
        };
        assert_eq!((hits, &days["before"]), (want, &json!(0)), "{page}");
    }
    // The imported page total holds the limit: a new page overflows.
    a_new_page_counts_on_other(&f, 12, 4).await;

    // Without a replay, the hours land in the base count; the pages are
    // the same.
    let plain = TestApp::spawn(&urls[2], &["--page-limit", "2"]).await;
    let p = plain.router();
    let (status, reply) = import(&p, "", &export).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let got = export_sites(&p).await;
    for (g, w) in got.iter().zip(&sites) {
        assert_eq!(
            (
                &g["slug"],
                &g["count"],
                &g["base_count"],
                &g["hourly"],
                &g["pages"]
            ),
            (
                &w["slug"],
                &w["count"],
                &w["count"],
                &json!([]),
                &w["pages"]
            )
        );
    }
    assert_eq!(site_json(&p, "blog").await["pages"], 2);
}

#[tokio::test]
async fn pages_survive_an_export_and_an_import_on_sqlite() {
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    pages_survive_an_export_and_an_import(dirs.each_ref().map(|d| sqlite_url(d.path()))).await;
}

#[tokio::test]
async fn pages_survive_an_export_and_an_import_on_postgres() {
    let pg = PgServer::start();
    pages_survive_an_export_and_an_import([(); 3].map(|_| pg.create_database())).await;
}

/// Bad pages anywhere in a document: a 400 naming the site and the page,
/// and nothing written (not even the valid site before them).
async fn bad_pages_write_nothing(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--page-limit", "2"]).await;
    let r = with_pages(&app).await;
    let before = export_sites(&r).await;
    let doc = |pages: &str| {
        format!(r#"[{{"slug":"new1","count":5}},{{"slug":"blog","count":10,"pages":[{pages}]}}]"#)
    };
    let day = r#"{"d":"2026-11-20","hits":2},{"d":"2026-11-21","hits":2}"#;
    for (body, code, message) in [
        (
            doc(r#"{"page":"posts/hello","count":1}"#),
            "invalid_body",
            "site \"blog\", page \"posts/hello\": a page is a path that starts with / at line 1 column 84",
        ),
        (
            doc(&format!(r#"{{"page":"/a","count":3,"daily":[{day}]}}"#)),
            "invalid_request",
            "site \"blog\", page \"/a\": its days hold 4 hits, more than its count 3",
        ),
        (
            doc(r#"{"page":"/a","count":6},{"page":"(other)","count":5}"#),
            "invalid_request",
            "site \"blog\": its pages' counts add up to 11, more than its count 10",
        ),
        (
            doc(r#"{"page":"/a","count":1},{"page":"/a","count":1}"#),
            "invalid_request",
            "site \"blog\", page \"/a\": the page appears more than once",
        ),
        (
            doc(
                r#"{"page":"/a","count":1,"daily":[{"d":"2026-11-21","hits":1},{"d":"2026-11-20","hits":1}]}"#,
            ),
            "invalid_request",
            "site \"blog\", page \"/a\": days are ascending, each at most once",
        ),
        (
            doc(r#"{"page":"/a","count":-1}"#),
            "invalid_body",
            "sites[1].pages[0].count: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 86",
        ),
        (
            doc(r#"{"page":"/a","count":1,"colour":"red"}"#),
            "invalid_body",
            "unknown field `colour`, expected one of `page`, `count`, `daily` at line 1 column 94",
        ),
    ] {
        let (status, reply) = import(&r, "?hours=replay", &body).await;
        assert_eq!(
            (status, reply),
            (
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": code, "message": message}})
            ),
            "{body}"
        );
        let (status, reply) = import(&r, "", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
    }
    assert_eq!(export_sites(&r).await, before);
    assert_eq!(site_json(&r, "blog").await["pages"], 2);
}

with_both_databases!(bad_pages_write_nothing);

/// An import without pages leaves a site's pages as they are, unless its
/// new count cannot hold them; with `pages` they are replaced.
async fn pages_left_out_are_kept(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--page-limit", "2"]).await;
    let r = with_pages(&app).await;
    let blog = owned(&[("(other)", 3), ("/a", 4), ("/b", 2)]);
    assert_eq!(page_counts(&r, "blog").await, blog);
    let days_before = pages_json(&r, "blog").await;

    // Set as set-count sets it, the hours kept: the pages too.
    let (status, reply) = import(&r, "", r#"[{"slug":"blog","count":12}]"#).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(page_counts(&r, "blog").await, blog);
    assert_eq!(pages_json(&r, "blog").await, days_before);
    assert_eq!(
        (
            site_json(&r, "blog").await["count"].clone(),
            site_json(&r, "blog").await["pages"].clone()
        ),
        (json!(12), json!(2))
    );
    // Replayed hours, and a count that still holds the pages' 9 hits.
    let (status, reply) = import(&r, "?hours=replay", r#"[{"slug":"blog","count":9}]"#).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(page_counts(&r, "blog").await, blog);
    // A count below what the pages hold: they go.
    let (status, reply) = import(&r, "?hours=replay", r#"[{"slug":"blog","count":8}]"#).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(page_counts(&r, "blog").await, vec![]);
    assert_eq!(site_json(&r, "blog").await["pages"], 0);
    // Below the hours, without a replay: the hours go, and the pages.
    assert_eq!(page_counts(&r, "docs").await, owned(&[("/x", 1)]));
    let (status, reply) = import(&r, "", r#"[{"slug":"docs","count":0}]"#).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(page_counts(&r, "docs").await, vec![]);
    assert_eq!(site_json(&r, "docs").await["pages"], 0);

    // Given, they replace the site's; `[]` clears them.
    let given = r#"[{"slug":"blog","count":9,"pages":[{"page":"/z","count":9}]}]"#;
    assert_eq!(import(&r, "", given).await.0, StatusCode::OK);
    assert_eq!(page_counts(&r, "blog").await, owned(&[("/z", 9)]));
    assert_eq!(site_json(&r, "blog").await["pages"], 1);
    let cleared = r#"[{"slug":"blog","count":9,"pages":[]}]"#;
    assert_eq!(import(&r, "", cleared).await.0, StatusCode::OK);
    assert_eq!(page_counts(&r, "blog").await, vec![]);
    assert_eq!(import(&r, "", given).await.0, StatusCode::OK);

    // Once retention has folded the hours, a count set below the pages'
    // hits (but not below the hours, which are gone) drops the pages.
    let later = UNIX_EPOCH + Duration::from_secs(this_hour() + 3 * 86_400);
    app.store.prune_series(later).await.unwrap();
    let set = |count: i64| {
        let body = format!(r#"{{"count":{count}}}"#);
        let r = r.clone();
        async move {
            call(
                &r,
                Method::PUT,
                "/api/v1/sites/blog/count",
                Some(TOKEN),
                Some(&body),
            )
            .await
            .0
        }
    };
    assert_eq!(set(9).await, StatusCode::OK);
    assert_eq!(page_counts(&r, "blog").await, owned(&[("/z", 9)]));
    assert_eq!(set(8).await, StatusCode::OK);
    assert_eq!(page_counts(&r, "blog").await, vec![]);
    assert_eq!(site_json(&r, "blog").await["pages"], 0);
    // What export writes then imports again.
    let (_, _, export) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(import(&r, "?hours=replay", &export).await.0, StatusCode::OK);
}

with_both_databases!(pages_left_out_are_kept);

/// The date `days` days after the current hour's, as the API writes it.
fn date_after(days: u64) -> String {
    tally::domain::time::format_date((this_hour() + days * 86_400) as i64)
}

/// A case for [`refused_writing_nothing`]: `body`, refused naming `field`
/// with `why`, the error placed `past` columns after the end of the first
/// `value` in `body` (1 for a number, whose next character serde_json has
/// read; 0 at a string's closing quote; 2 just past a string read whole).
fn refusal(body: String, field: &str, why: &str, value: &str, past: usize) -> (String, String) {
    let column = body.find(value).unwrap() + value.len() + past;
    let message = format!("{field}: {why} at line 1 column {column}");
    (body, message)
}

/// Sites `blog` and `docs` with pages (as [`with_pages`] makes them, at a
/// page limit of 2); each case, `(body, message)`, replayed or not, is a
/// `400 invalid_body` with exactly that message, and nothing is written:
/// every count, base count, hour, page and page day is as before.
async fn refused_writing_nothing(database_url: &str, cases: &[(String, String)]) {
    let app = TestApp::spawn(database_url, &["--page-limit", "2"]).await;
    let r = with_pages(&app).await;
    let before = export_sites(&r).await;
    let blog = site_json(&r, "blog").await;
    for (body, message) in cases {
        for query in ["?hours=replay", ""] {
            let (status, reply) = import(&r, query, body).await;
            assert_eq!(
                (status, reply),
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "invalid_body", "message": message}})
                ),
                "{query} {body}"
            );
        }
    }
    assert_eq!(export_sites(&r).await, before);
    assert_eq!(site_json(&r, "blog").await, blog);
}

/// An hour after the current one, or a page's day after the current one,
/// replayed or not: a 400 naming it.
async fn future_hours_are_refused(database_url: &str) {
    let (now, next) = (timestamp(this_hour()), timestamp(this_hour() + 3600));
    let hourly = format!(r#"[{{"t":"{now}","hits":1}},{{"t":"{next}","hits":1}}]"#);
    let hours = format!(
        r#"[{{"slug":"new1","count":5}},{{"slug":"blog","count":13,"base_count":11,"hourly":{hourly}}}]"#
    );
    let (today, tomorrow) = (date_before(0), date_after(1));
    let daily = format!(r#"[{{"d":"{today}","hits":1}},{{"d":"{tomorrow}","hits":1}}]"#);
    let days = format!(
        r#"[{{"slug":"new1","count":5}},{{"slug":"blog","count":13,"pages":[{{"page":"/a","count":2,"daily":{daily}}}]}}]"#
    );
    let cases = [
        refusal(
            hours,
            "sites[1].hourly[1].t",
            &format!("{next} is after the current hour"),
            &next,
            2,
        ),
        refusal(
            days,
            "sites[1].pages[0].daily[1].d",
            &format!("{tomorrow} is after the current day"),
            &tomorrow,
            2,
        ),
    ];
    refused_writing_nothing(database_url, &cases).await;
}

with_both_databases!(future_hours_are_refused);

/// The hour that starts at 9999-12-31T23:00:00Z, which no series can show
/// (a range ends by that time at the latest): a 400 naming it.
async fn hours_past_the_series_range_are_refused(database_url: &str) {
    let last = "9999-12-31T23:00:00Z";
    let body = format!(
        r#"[{{"slug":"new1","count":5}},{{"slug":"blog","count":12,"base_count":11,"hourly":[{{"t":"{last}","hits":1}}]}}]"#
    );
    let why = format!("{last} is past the last hour a series can show, 9999-12-31T22:00:00Z");
    let case = refusal(body, "sites[1].hourly[0].t", &why, last, 2);
    refused_writing_nothing(database_url, &[case]).await;
}

with_both_databases!(hours_past_the_series_range_are_refused);

/// A negative count anywhere (a site's count or base count, a page's
/// count, an hour's or a day's hits), replayed or not: a 400 naming it.
async fn negative_counts_are_refused(database_url: &str) {
    let (hour, day) = (timestamp(this_hour()), date_before(0));
    let site = |rest: &str| format!(r#"[{{"slug":"new1","count":5}},{{"slug":"blog",{rest}}}]"#);
    let cases = [
        (site(r#""count":-1"#), "sites[1].count", r#""count":-1"#),
        (
            format!(r#"{{"sites":{}}}"#, site(r#""count":12,"base_count":-1"#)),
            "sites[1].base_count",
            r#""base_count":-1"#,
        ),
        (
            site(r#""count":12,"pages":[{"page":"/a","count":-1}]"#),
            "sites[1].pages[0].count",
            r#""count":-1"#,
        ),
        (
            site(&format!(r#""count":12,"hourly":[{{"t":"{hour}","hits":-1}}]"#)),
            "sites[1].hourly[0].hits",
            r#""hits":-1"#,
        ),
        (
            site(&format!(
                r#""count":12,"pages":[{{"page":"/a","count":2,"daily":[{{"d":"{day}","hits":-1}}]}}]"#
            )),
            "sites[1].pages[0].daily[0].hits",
            r#""hits":-1"#,
        ),
    ]
    .map(|(body, field, value)| {
        let why = "-1 is not a whole number from 0 to 9007199254740991";
        refusal(body, field, why, value, 1)
    });
    refused_writing_nothing(database_url, &cases).await;
}

with_both_databases!(negative_counts_are_refused);

/// A timestamp that is not one (the export's `exported_at`, a site's
/// `created_at`, an hour's `t`, a page day's `d`), or an hour not on the
/// hour, replayed or not: a 400 naming it.
async fn malformed_timestamps_are_refused(database_url: &str) {
    let sites = r#"[{"slug":"new1","count":5},{"slug":"blog","count":12}]"#;
    let blog = |rest: &str| {
        format!(r#"[{{"slug":"new1","count":5}},{{"slug":"blog","count":12,{rest}}}]"#)
    };
    let instant = "an RFC 3339 timestamp such as \"2026-11-23T01:00:00Z\"";
    let half = "2026-01-10T05:30:00Z";
    let mut cases = [
        (
            format!(r#"{{"exported_at":"junk","sites":{sites}}}"#),
            "exported_at",
            r#""junk""#,
            instant,
        ),
        (
            blog(r#""created_at":"last week""#),
            "sites[1].created_at",
            r#""last week""#,
            instant,
        ),
        (
            blog(r#""hourly":[{"t":"yesterday","hits":1}]"#),
            "sites[1].hourly[0].t",
            r#""yesterday""#,
            instant,
        ),
        (
            blog(r#""pages":[{"page":"/a","count":1,"daily":[{"d":"2026-11-23T00:00:00Z","hits":1}]}]"#),
            "sites[1].pages[0].daily[0].d",
            r#""2026-11-23T00:00:00Z""#,
            "a date such as \"2026-11-23\"",
        ),
    ]
    .map(|(body, field, value, want)| refusal(body, field, &format!("{value} is not {want}"), value, 0))
    .to_vec();
    cases.push(refusal(
        blog(&format!(r#""hourly":[{{"t":"{half}","hits":1}}]"#)),
        "sites[1].hourly[0].t",
        &format!("{half} is not the start of an hour"),
        half,
        2,
    ));
    refused_writing_nothing(database_url, &cases).await;
}

with_both_databases!(malformed_timestamps_are_refused);

/// 20 pages (and an overflow page) imported at a page limit of 5: the 5
/// with the most hits are kept, the 15 others land on `(other)` with their
/// counts and daily hits, as counting puts a page past the limit; the
/// site's count and its pages' total are the document's, and a new page
/// counts on `(other)`.
async fn pages_past_the_limit_fold_into_other(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--page-limit", "5"]).await;
    let r = app.router();
    let (d1, d0) = (date_before(1), date_before(0));
    let mut pages = vec![json!({"page": "(other)", "count": 4, "daily": [{"d": d0, "hits": 4}]})];
    for i in 0..20 {
        let count = i + 1;
        let mut daily = vec![json!({"d": d1, "hits": 1})];
        if count > 1 {
            daily.push(json!({"d": d0, "hits": count - 1}));
        }
        pages.push(json!({"page": format!("/p{i:02}"), "count": count, "daily": daily}));
    }
    let doc = json!({"exported_at": timestamp(this_hour()), "sites": [
        {"slug": "blog", "name": "Blog", "count": 224, "base_count": 224, "hourly": [],
         "pages": pages},
    ]})
    .to_string();
    let (status, reply) = import(&r, "?hours=replay", &doc).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let site = site_json(&r, "blog").await;
    assert_eq!((&site["count"], &site["pages"]), (&json!(224), &json!(5)));
    let exported = export_sites(&r).await;
    let blog = exported.iter().find(|s| s["slug"] == "blog").unwrap();
    let counts: Vec<(&str, i64)> = blog["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["page"].as_str().unwrap(), p["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("(other)", 124),
            ("/p15", 16),
            ("/p16", 17),
            ("/p17", 18),
            ("/p18", 19),
            ("/p19", 20)
        ]
    );
    assert_eq!(
        blog["pages"][0],
        json!({"page": "(other)", "count": 124, "daily": [
            {"d": d1, "hits": 15}, {"d": d0, "hits": 109}]})
    );
    assert_eq!(
        blog["pages"][5],
        json!({"page": "/p19", "count": 20, "daily": [
            {"d": d1, "hits": 1}, {"d": d0, "hits": 19}]})
    );
    // The page limit holds: a new page counts on (other).
    a_new_page_counts_on_other(&r, 225, 125).await;
}

with_both_databases!(pages_past_the_limit_fold_into_other);
