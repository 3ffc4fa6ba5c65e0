//! Hostile backends against the merged catalog (issue #10) and what clients see of it
//! (issue #11): real child processes of the project's test server, asked to misbehave.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Warn records containing every one of `needles`.
fn warnings(needles: &[&str]) -> Vec<String> {
    logs::records(|(l, _, m)| *l == log::Level::Warn && needles.iter().all(|n| m.contains(n)))
        .into_iter()
        .map(|(_, _, m)| m)
        .collect()
}

/// Polls `f` until it holds; the deadline is generous, only there so a broken build fails.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn backend_status(r: &mcprouter::Router, name: &str) -> Value {
    let st = r.status();
    st["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).cloned().unwrap()
}

fn read(s: &mcprouter::Session, uri: &str) -> Value {
    call(s, 3, "resources/read", json!({"uri": uri}))
}

fn read_text(s: &mcprouter::Session, uri: &str) -> String {
    let v = read(s, uri);
    v["result"]["contents"][0]["text"].as_str().unwrap_or_else(|| panic!("read {uri}: {v}")).to_owned()
}

fn template_list(s: &mcprouter::Session) -> Vec<String> {
    let v = call(s, 4, "resources/templates/list", json!({}));
    v["result"]["resourceTemplates"].as_array().unwrap().iter().map(|t| t["uriTemplate"].to_string()).collect()
}

#[test]
fn hostile_templates_are_dropped_and_reads_stay_linear() {
    logs::capture();
    let deep = "{v}/".repeat(5_000);
    let adjacent = "x://{a}{b}{c}{d}{e}{f}{g}{h}/end";
    let r = router("", &[backend("deep", &["--template", &deep, "--template", adjacent])]);
    let s = r.session(None).unwrap();
    let listed = template_list(&s);
    assert_eq!(listed.len(), 2, "the oversized template is dropped: {listed:?}");
    // With the deep template the recursive matcher overflowed the stack and aborted.
    let v = read(&s, &"a/".repeat(50_000));
    assert_eq!(v["error"]["code"], -32602, "a read nothing claims gets the normal error");
    let near_miss = format!("x://{}", "y".repeat(50));
    assert_eq!(near_miss.len(), 54);
    assert_eq!(read(&s, &near_miss)["error"]["code"], -32602);
    assert_eq!(read(&s, &format!("x://{}", "y".repeat(100_000)))["error"]["code"], -32602);
    assert_eq!(read_text(&s, "x://abcdefgh/end"), "deep read x://abcdefgh/end");
    let w = warnings(&["[deep]", "oversized resource template"]);
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn a_backend_past_a_catalog_cap_is_refused_and_harms_no_one() {
    logs::capture();
    let mut fat = backend("fat", &["--endless-pages", "10", "--pad-bytes", "10000"]);
    fat.push_str("    max_catalog_bytes: 300000\n");
    let r =
        router("max_catalog_items: 500", &[backend("flood", &["--endless-pages", "100"]), fat, backend("fine", &[])]);
    let s = r.session(None).unwrap();
    // Endless pages: had paging not stopped at the cap, the router would still be listing.
    let flood = backend_status(&r, "flood");
    assert_eq!(flood["state"], "ready");
    assert_eq!(flood["tools"], 0);
    let why = flood["catalog_error"].as_str().unwrap_or_default();
    assert!(why.contains("max_catalog_items") && why.contains("500"), "{flood}");
    assert_eq!(flood["last_error"], flood["catalog_error"]);
    let fat = backend_status(&r, "fat");
    let why = fat["catalog_error"].as_str().unwrap_or_default();
    assert!(why.contains("max_catalog_bytes") && why.contains("300000"), "{fat}");
    assert!(backend_status(&r, "fine")["catalog_error"].is_null());
    let names = tool_names(&s);
    assert!(names.iter().all(|n| !n.starts_with("p0_")), "a refused catalog serves nothing");
    assert_eq!(tool_text(&s, "whoami", json!({})).unwrap(), "fine");
    assert_eq!(warnings(&["[flood]", "catalog refused"]).len(), 1);
    assert_eq!(warnings(&["[fat]", "catalog refused"]).len(), 1);
}

#[test]
fn an_impostor_cannot_take_another_backends_prefixed_names() {
    logs::capture();
    let r =
        router("", &[backend("imp", &["--extra-tool", "victim__echo"]), backend("victim", &[]), backend("third", &[])]);
    let s = r.session(None).unwrap();
    let names = tool_names(&s);
    assert!(names.contains(&"imp__victim__echo".to_owned()), "{names:?}");
    // `echo` collides, so the victim's own is prefixed, and the name is the victim's.
    assert_eq!(tool_text(&s, "victim__echo", json!({"message": "mine"})).unwrap(), "mine");
    assert_eq!(tool_text(&s, "imp__victim__echo", json!({})).unwrap(), "imp victim__echo");
    let w = warnings(&["imp lists tool \"victim__echo\"", "victim's prefix space"]);
    assert_eq!(w.len(), 1, "{w:?}");
    let st = r.status();
    let shown = st["router"]["catalog"]["warnings"].as_array().unwrap();
    assert!(shown.iter().any(|w| w.as_str().unwrap().contains("victim's prefix space")), "{st}");
}

#[test]
fn config_routes_and_specific_templates_beat_a_catch_all() {
    logs::capture();
    let r = router(
        "resource_routes:\n  - {prefix: \"docs://\", backend: beta}",
        &[
            backend("greedy", &["--template", "{+anything}"]),
            backend("beta", &["--template", "zzz://{x}"]),
            backend("twin", &["--template", "zzz://{y}"]),
        ],
    );
    let s = r.session(None).unwrap();
    assert_eq!(read_text(&s, "docs://guide"), "beta read docs://guide", "config wins");
    assert_eq!(read_text(&s, "test://beta/item/7"), "item 7", "the more specific template wins");
    assert_eq!(read_text(&s, "other://y"), "greedy read other://y", "the catch-all takes the rest");
    assert_eq!(read_text(&s, "zzz://1"), "beta read zzz://1", "a tie goes to the first in config order");
    let w = warnings(&["\"zzz://{x}\" (beta)", "\"zzz://{y}\" (twin)", "equally specific"]);
    assert_eq!(w.len(), 1, "{w:?}");
    let st = r.status();
    let shown = st["router"]["catalog"]["warnings"].as_array().unwrap();
    assert!(shown.iter().any(|w| w.as_str().unwrap().contains("equally specific")), "{st}");
}

#[test]
fn identical_templates_of_several_backends_are_listed_once() {
    logs::capture();
    let r = router(
        "",
        &[backend("one", &["--template", "shared://{id}"]), backend("two", &["--template", "shared://{id}"])],
    );
    let s = r.session(None).unwrap();
    let listed = template_list(&s);
    assert_eq!(listed.iter().filter(|t| t.contains("shared://")).count(), 1, "{listed:?}");
    assert_eq!(listed.len(), 3, "each backend's own item template, and the shared one: {listed:?}");
    assert_eq!(read_text(&s, "shared://5"), "one read shared://5");
    assert_eq!(warnings(&["\"shared://{id}\" is listed by one and two"]).len(), 1);
}

/// Waits until the catalog was rebuilt after `down` went down: `other` announces a new tool
/// and the session sees it.
fn rebuild_after(r: &mcprouter::Router, s: &mcprouter::Session, down: &str, other_tool: &str) {
    wait_for("the backend is down", || backend_status(r, down)["state"] != "ready");
    assert_eq!(tool_text(s, other_tool, json!({})).unwrap(), "changed");
    wait_for("a rebuild that shows the new tool", || tool_names(s).contains(&"dynamic".to_owned()));
}

#[test]
fn a_down_stdio_backends_tools_stay_and_answer_unavailable() {
    let r = router("restart: {enabled: false}", &[backend("alpha", &[]), backend("beta", &[])]);
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "alpha__whoami", json!({})).unwrap(), "alpha");
    assert_eq!(tool_text(&s, "alpha__crash", json!({})).unwrap_err().0, -32000);
    rebuild_after(&r, &s, "alpha", "beta__notify_changed");
    assert!(tool_names(&s).contains(&"alpha__whoami".to_owned()));
    let err = tool_text(&s, "alpha__whoami", json!({})).unwrap_err();
    assert_eq!(err.0, -32000, "{err:?}");
    assert!(err.1.contains("unavailable"), "{err:?}");
}

#[test]
fn a_down_network_backends_tools_stay_and_answer_unavailable() {
    let ws = listen(&["--ws", "127.0.0.1:0", "--name", "wsrv"]);
    let r = router(
        "restart: {enabled: false}",
        &[format!("  - name: w\n    transport: websocket\n    url: {}/mcp\n", ws.url), backend("local", &[])],
    );
    let s = r.session(None).unwrap();
    assert_eq!(tool_text(&s, "w__whoami", json!({})).unwrap(), "wsrv");
    drop(ws);
    rebuild_after(&r, &s, "w", "local__notify_changed");
    assert!(tool_names(&s).contains(&"w__whoami".to_owned()));
    assert_eq!(tool_text(&s, "w__whoami", json!({})).unwrap_err().0, -32000);
}

#[test]
fn a_backend_stuck_in_its_refresh_delays_no_other_backend() {
    let mut stuck = backend("stuck", &["--list-changed-after-init", "--hang-lists-after", "1"]);
    // Far longer than the waits below: the old single dispatcher would sit out all of it.
    stuck.push_str("    timeout_ms: 200000\n");
    let r = router("restart: {initial_backoff_ms: 100}", &[stuck, backend("good", &[])]);
    let s = r.session(None).unwrap();
    let pending = |r: &mcprouter::Router| backend_status(r, "stuck")["in_flight"].as_u64().unwrap_or(0);
    wait_for("the stuck backend's refresh to be pending", || pending(&r) == 1);
    // Another backend's refresh completes meanwhile…
    assert_eq!(tool_text(&s, "good__notify_changed", json!({})).unwrap(), "changed");
    wait_for("good's refresh", || tool_names(&s).contains(&"dynamic".to_owned()));
    assert_eq!(pending(&r), 1, "the stuck refresh is still waiting");
    // …and so does its restart.
    assert_eq!(tool_text(&s, "good__crash", json!({})).unwrap_err().0, -32000);
    wait_for("good's restart", || {
        let g = backend_status(&r, "good");
        g["restarts"] == 1 && g["state"] == "ready"
    });
    assert_eq!(tool_text(&s, "good__whoami", json!({})).unwrap(), "good");
    assert_eq!(pending(&r), 1, "the stuck refresh is still waiting");
    // Asking again while one is in flight only marks it to go round once more.
    assert_eq!(tool_text(&s, "stuck__notify_changed", json!({})).unwrap(), "changed");
    assert_eq!(tool_text(&s, "good__whoami", json!({})).unwrap(), "good");
    // Shutdown fails the stuck call at once and joins its refresh thread.
    r.shutdown(Duration::from_millis(500));
    assert!(r.is_closed());
}
