//! The C API, called from Rust: every export's documented statuses, including misuse (NULL,
//! invalid UTF-8, closed sessions, a router after shutdown).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{null, null_mut};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use mcprouter::ffi::*;

const BIN: &str = env!("CARGO_BIN_EXE_mcprouter");

fn config() -> CString {
    CString::new(format!(
        "router:\n  request_timeout_ms: 10000\n  shutdown_grace_ms: 500\n\
         backends:\n  - name: alpha\n    command: {BIN}\n    args: [test-server, --name, alpha]\n"
    ))
    .unwrap()
}

/// Takes ownership of an error: (status, message), freed.
unsafe fn take_error(e: *mut mcprouter_error) -> (mcprouter_status, String) {
    assert!(!e.is_null(), "expected an error object");
    let status = unsafe { mcprouter_error_status(e) };
    let message = unsafe { CStr::from_ptr(mcprouter_error_message(e)) }.to_str().unwrap().to_owned();
    unsafe { mcprouter_error_free(e) };
    (status, message)
}

/// Takes ownership of a returned string.
unsafe fn take_string(s: *mut c_char) -> String {
    assert!(!s.is_null(), "expected a string");
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_owned();
    unsafe { mcprouter_string_free(s) };
    text
}

/// A pointer that is not NULL, to see out-params cleared.
fn sentinel<T>() -> *mut T {
    std::ptr::dangling_mut()
}

unsafe fn new_router() -> *mut mcprouter_router {
    let yaml = config();
    let mut router = null_mut();
    let mut err = sentinel();
    let st = unsafe { mcprouter_router_new_from_yaml(yaml.as_ptr(), &mut router, &mut err) };
    assert_eq!(st, mcprouter_status::Ok);
    assert!(err.is_null(), "err is cleared on success");
    assert!(!router.is_null());
    router
}

unsafe fn open(router: *const mcprouter_router) -> *mut mcprouter_session {
    let mut s = null_mut();
    let st = unsafe { mcprouter_session_open(router, c"test-client".as_ptr(), &mut s, null_mut()) };
    assert_eq!(st, mcprouter_status::Ok);
    s
}

unsafe fn call(s: *const mcprouter_session, msg: &str) -> (mcprouter_status, Option<String>) {
    let msg = CString::new(msg).unwrap();
    let mut reply = sentinel();
    let st = unsafe { mcprouter_session_handle(s, msg.as_ptr(), &mut reply, null_mut()) };
    let reply = (!reply.is_null()).then(|| unsafe { take_string(reply) });
    (st, reply)
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[test]
fn status_codes_are_fixed_and_named() {
    let expected = [
        "OK",
        "NULL_PARAMETER",
        "INVALID_ARGUMENT",
        "INVALID_UTF8",
        "CONFIG",
        "TIMEOUT",
        "QUEUE_FULL",
        "CIRCUIT_OPEN",
        "NO_BACKEND",
        "TRANSPORT",
        "PROTOCOL",
        "CLOSED",
        "ALREADY_USED",
        "PANIC",
    ];
    for (value, name) in expected.iter().enumerate() {
        let st = mcprouter_status::from_raw(value as u32).unwrap();
        assert_eq!(st as u32, value as u32);
        assert_eq!(st.name(), *name);
        let s = unsafe { CStr::from_ptr(mcprouter_status_str(value as u32)) };
        assert_eq!(s.to_str().unwrap(), *name);
    }
    let unknown = unsafe { CStr::from_ptr(mcprouter_status_str(9999)) };
    assert_eq!(unknown.to_str().unwrap(), "UNKNOWN");
}

#[test]
fn null_parameters_everywhere() {
    unsafe {
        let yaml = config();
        let mut router = sentinel();
        let mut err = null_mut();
        // NULL input: NULL_PARAMETER, out cleared, an error naming the argument.
        assert_eq!(mcprouter_router_new_from_yaml(null(), &mut router, &mut err), mcprouter_status::NullParameter);
        assert!(router.is_null());
        let (st, msg) = take_error(err);
        assert_eq!(st, mcprouter_status::NullParameter);
        assert!(msg.contains("yaml"), "{msg}");
        // NULL out-param.
        assert_eq!(
            mcprouter_router_new_from_yaml(yaml.as_ptr(), null_mut(), null_mut()),
            mcprouter_status::NullParameter
        );
        assert_eq!(mcprouter_router_new_from_file(null(), &mut router, null_mut()), mcprouter_status::NullParameter);
        assert_eq!(
            mcprouter_router_new_from_file(c"/x".as_ptr(), null_mut(), null_mut()),
            mcprouter_status::NullParameter
        );

        let mut s = sentinel();
        assert_eq!(mcprouter_session_open(null(), null(), &mut s, null_mut()), mcprouter_status::NullParameter);
        assert!(s.is_null());
        let mut text = sentinel();
        assert_eq!(mcprouter_router_metrics(null(), &mut text, null_mut()), mcprouter_status::NullParameter);
        assert!(text.is_null());
        assert_eq!(mcprouter_router_status(null(), &mut text, null_mut()), mcprouter_status::NullParameter);
        let mut reply = sentinel();
        assert_eq!(
            mcprouter_session_handle(null(), c"{}".as_ptr(), &mut reply, null_mut()),
            mcprouter_status::NullParameter
        );
        assert!(reply.is_null());
        assert_eq!(mcprouter_session_next_event(null(), 0, &mut reply, null_mut()), mcprouter_status::NullParameter);
        assert_eq!(
            mcprouter_session_handle_async(null(), c"{}".as_ptr(), None, null_mut()),
            mcprouter_status::NullParameter
        );

        // NULL handles are no-ops for the void functions.
        mcprouter_session_close(null_mut());
        mcprouter_router_shutdown(null_mut(), 0);
        mcprouter_router_free(null_mut());
        mcprouter_string_free(null_mut());
        mcprouter_error_free(null_mut());
        assert_eq!(mcprouter_error_status(null()), mcprouter_status::NullParameter);
        assert!(!mcprouter_error_message(null()).is_null());

        // NULL arguments on a live router and session.
        let r = new_router();
        assert_eq!(mcprouter_router_metrics(r, null_mut(), null_mut()), mcprouter_status::NullParameter);
        assert_eq!(mcprouter_router_status(r, null_mut(), null_mut()), mcprouter_status::NullParameter);
        assert_eq!(mcprouter_session_open(r, null(), null_mut(), null_mut()), mcprouter_status::NullParameter);
        let s = open(r);
        assert_eq!(mcprouter_session_handle(s, null(), &mut reply, null_mut()), mcprouter_status::NullParameter);
        assert_eq!(
            mcprouter_session_handle(s, c"{}".as_ptr(), null_mut(), null_mut()),
            mcprouter_status::NullParameter
        );
        assert_eq!(mcprouter_session_next_event(s, 0, null_mut(), null_mut()), mcprouter_status::NullParameter);
        assert_eq!(mcprouter_session_handle_async(s, null(), None, null_mut()), mcprouter_status::NullParameter);
        assert_eq!(
            mcprouter_session_handle_async(s, c"{}".as_ptr(), None, null_mut()),
            mcprouter_status::NullParameter
        );
        mcprouter_session_close(s);
        mcprouter_router_free(r);
    }
}

#[test]
fn invalid_utf8_and_bad_config() {
    unsafe {
        let bad = c"backends: []\n\xff\xfe".as_ptr();
        let mut router = sentinel();
        let mut err = null_mut();
        assert_eq!(mcprouter_router_new_from_yaml(bad, &mut router, &mut err), mcprouter_status::InvalidUtf8);
        assert!(router.is_null());
        let (st, msg) = take_error(err);
        assert_eq!(st, mcprouter_status::InvalidUtf8);
        assert!(msg.contains("offset 13"), "{msg}");

        assert_eq!(
            mcprouter_router_new_from_yaml(c"backends: 3\n".as_ptr(), &mut router, &mut err),
            mcprouter_status::Config
        );
        assert!(router.is_null());
        let (st, msg) = take_error(err);
        assert_eq!(st, mcprouter_status::Config);
        assert!(msg.contains("backends"), "{msg}");

        assert_eq!(
            mcprouter_router_new_from_file(c"/nonexistent/mcprouter.yaml".as_ptr(), &mut router, &mut err),
            mcprouter_status::Config
        );
        let (_, msg) = take_error(err);
        assert!(msg.contains("/nonexistent/mcprouter.yaml"), "{msg}");

        let r = new_router();
        let mut s = sentinel();
        assert_eq!(mcprouter_session_open(r, c"\xc3(".as_ptr(), &mut s, null_mut()), mcprouter_status::InvalidUtf8);
        assert!(s.is_null());
        let s = open(r);
        let mut reply = sentinel();
        assert_eq!(
            mcprouter_session_handle(
                s,
                c"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".as_ptr(),
                &mut reply,
                &mut err
            ),
            mcprouter_status::InvalidUtf8
        );
        assert!(reply.is_null());
        assert_eq!(take_error(err).0, mcprouter_status::InvalidUtf8);
        assert_eq!(
            mcprouter_session_handle_async(s, c"\xff".as_ptr(), None, null_mut()),
            mcprouter_status::NullParameter,
            "a NULL callback is reported before the message is read"
        );
        assert_eq!(
            mcprouter_session_handle_async(s, c"\xff".as_ptr(), Some(on_reply), null_mut()),
            mcprouter_status::InvalidUtf8,
            "not started, so the callback (which would dereference NULL userdata) never runs"
        );

        // Invalid JSON is not a status: it gets a JSON-RPC error reply.
        let (st, reply) = call(s, "{not json");
        assert_eq!(st, mcprouter_status::Ok);
        assert!(reply.unwrap().contains("-32700"));
        mcprouter_session_close(s);
        mcprouter_router_free(r);
    }
}

#[test]
fn a_whole_session_and_then_shutdown() {
    unsafe {
        let r = new_router();
        let s = open(r);
        let (st, reply) = call(s, INIT);
        assert_eq!(st, mcprouter_status::Ok);
        assert!(reply.unwrap().contains("protocolVersion"));
        let (st, reply) = call(s, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!((st, reply), (mcprouter_status::Ok, None), "notifications have no reply");
        let (_, reply) = call(
            s,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
        );
        assert!(reply.unwrap().contains("\"hi\""));

        // Nothing queued: TIMEOUT with the out-param NULL and an error saying so.
        let mut event = sentinel();
        let mut err = null_mut();
        assert_eq!(mcprouter_session_next_event(s, 0, &mut event, &mut err), mcprouter_status::Timeout);
        assert!(event.is_null());
        assert_eq!(take_error(err).0, mcprouter_status::Timeout);

        let (_, reply) = call(
            s,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"log","arguments":{"message":"note"}}}"#,
        );
        assert!(reply.unwrap().contains("logged"));
        assert_eq!(mcprouter_session_next_event(s, 5000, &mut event, &mut err), mcprouter_status::Ok);
        assert!(err.is_null());
        let ev = take_string(event);
        assert!(ev.contains("notifications/message") && ev.contains("note"), "{ev}");

        let mut text = null_mut();
        assert_eq!(mcprouter_router_status(r, &mut text, null_mut()), mcprouter_status::Ok);
        let status: serde_json::Value = serde_json::from_str(&take_string(text)).unwrap();
        assert_eq!(status["backends"][0]["state"], "ready");
        assert_eq!(mcprouter_router_metrics(r, &mut text, null_mut()), mcprouter_status::Ok);
        assert!(take_string(text).contains("mcprouter_backend_up{backend=\"alpha\"} 1"));

        // After shutdown the handles stay valid and every call says CLOSED.
        mcprouter_router_shutdown(r, 500);
        mcprouter_router_shutdown(r, 500);
        let mut reply = sentinel();
        assert_eq!(mcprouter_session_handle(s, c"{}".as_ptr(), &mut reply, &mut err), mcprouter_status::Closed);
        assert!(reply.is_null());
        assert_eq!(take_error(err).0, mcprouter_status::Closed);
        assert_eq!(mcprouter_session_next_event(s, 10, &mut event, null_mut()), mcprouter_status::Closed);
        let mut s2 = sentinel();
        assert_eq!(mcprouter_session_open(r, null(), &mut s2, null_mut()), mcprouter_status::Closed);
        assert!(s2.is_null());
        assert_eq!(mcprouter_router_status(r, &mut text, null_mut()), mcprouter_status::Closed);
        assert_eq!(mcprouter_router_metrics(r, &mut text, null_mut()), mcprouter_status::Closed);
        assert!(text.is_null());
        mcprouter_session_close(s);
        mcprouter_router_free(r);
    }
}

#[test]
fn a_session_outlives_its_router_handle() {
    unsafe {
        let r = new_router();
        let s = open(r);
        mcprouter_router_free(r);
        let (st, reply) = call(
            s,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#,
        );
        assert_eq!(st, mcprouter_status::Ok);
        assert!(reply.unwrap().contains('5'));
        mcprouter_session_close(s);
    }
}

struct Reply {
    status: mcprouter_status,
    reply: Option<String>,
    error: Option<String>,
}

unsafe extern "C" fn on_reply(
    userdata: *mut c_void,
    status: mcprouter_status,
    reply: *mut c_char,
    error: *const c_char,
) {
    let tx = unsafe { Box::from_raw(userdata.cast::<mpsc::Sender<Reply>>()) };
    let reply = (!reply.is_null()).then(|| unsafe { take_string(reply) });
    let error = (!error.is_null()).then(|| unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned());
    let _ = tx.send(Reply { status, reply, error });
}

unsafe fn call_async(s: *const mcprouter_session, msg: &CStr) -> mpsc::Receiver<Reply> {
    let (tx, rx) = mpsc::channel();
    let userdata = Box::into_raw(Box::new(tx)).cast::<c_void>();
    let st = unsafe { mcprouter_session_handle_async(s, msg.as_ptr(), Some(on_reply), userdata) };
    assert_eq!(st, mcprouter_status::Ok);
    rx
}

#[test]
fn async_calls_reply_exactly_once() {
    unsafe {
        let r = new_router();
        let s = open(r);
        let echo = c"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"async\"}}}";
        // Distinct ids: a second request under an id still in flight is refused (-32600).
        let echo_n = |n: usize| {
            let m = format!(
                r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"async"}}}}}}"#
            );
            std::ffi::CString::new(m).unwrap()
        };
        let pending: Vec<_> = (0..8).map(|n| call_async(s, &echo_n(n))).collect();
        for rx in pending {
            let got = rx.recv_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(got.status, mcprouter_status::Ok);
            assert!(got.reply.unwrap().contains("async"));
            assert!(got.error.is_none());
            assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "called once");
        }
        let note = call_async(s, c"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
        let got = note.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!((got.status, got.reply), (mcprouter_status::Ok, None));

        mcprouter_router_shutdown(r, 200);
        let closed = call_async(s, echo).recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(closed.status, mcprouter_status::Closed);
        assert!(closed.reply.is_none());
        assert!(closed.error.unwrap().contains("closed"));
        mcprouter_session_close(s);
        mcprouter_router_free(r);
    }
}

static LOGGED: Mutex<Vec<(c_int, String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_log(
    userdata: *mut c_void,
    level: c_int,
    target: mcprouter_str<'_>,
    message: mcprouter_str<'_>,
) {
    assert_eq!(userdata as usize, 42);
    let view = |s: mcprouter_str<'_>| {
        let bytes = unsafe { std::slice::from_raw_parts(s.data.cast::<u8>(), s.len) };
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    LOGGED.lock().unwrap().push((level, view(target), view(message)));
}

#[test]
fn log_callback_receives_records_until_removed() {
    unsafe {
        mcprouter_set_log_callback(Some(on_log), 42 as *mut c_void, 5);
        let r = new_router();
        let s = open(r);
        // The session logs ignored notifications at debug level.
        call(s, r#"{"jsonrpc":"2.0","method":"notifications/unheard-of"}"#);
        mcprouter_set_log_callback(None, null_mut(), 0);
        let seen = LOGGED.lock().unwrap().clone();
        assert!(
            seen.iter().any(|(level, target, msg)| *level == 4
                && target == "mcprouter::session"
                && msg.contains("notifications/unheard-of")),
            "{seen:?}"
        );
        let before = LOGGED.lock().unwrap().len();
        call(s, r#"{"jsonrpc":"2.0","method":"notifications/unheard-of"}"#);
        assert_eq!(LOGGED.lock().unwrap().len(), before, "no calls after removal");
        mcprouter_session_close(s);
        mcprouter_router_free(r);
    }
}

#[test]
fn closing_and_freeing_during_an_async_call_still_calls_back_once() {
    unsafe {
        let r = new_router();
        let s = open(r);
        let slow = c"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"slow\",\"arguments\":{\"ms\":300}}}";
        let rx = call_async(s, slow);
        std::thread::sleep(Duration::from_millis(50));
        // The async call holds the last references: the router stops when it finishes.
        mcprouter_session_close(s);
        mcprouter_router_free(r);
        let got = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(
            got.status == mcprouter_status::Ok || got.status == mcprouter_status::Closed,
            "{:?} {:?}",
            got.status,
            got.error
        );
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "called once");
    }
}
