//! The request-path rules, checked one by one.

use super::*;

fn rewrite(headers: &[(&str, &str)], pass: Pass) -> (Vec<(String, String)>, TraceId) {
    let mut out = HeaderMap::new();
    let iter = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let trace = rewrite_request(iter, "10.0.0.9", pass, &mut out).id;
    let got = out
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    (got, trace)
}

fn get<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_instance_gets_cloud_runs_headers_and_no_hop_by_hop_ones() {
    let (h, trace) = rewrite(
        &[
            ("host", "api.localhost"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("x-forwarded-for", "1.2.3.4"),
            ("traceparent", "garbage"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
        Pass::default(),
    );
    for gone in ["connection", "x-secret", "upgrade", "te"] {
        assert!(get(&h, gone).is_empty(), "{gone} forwarded: {h:?}");
    }
    assert_eq!(get(&h, "x-forwarded-for"), ["1.2.3.4, 10.0.0.9"]);
    assert_eq!(get(&h, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        get(&h, "traceparent"),
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        "the first valid one, once"
    );
    assert_eq!(trace.to_log(), "0af7651916cd43dd8448eb211c80319c");
    let cloud = get(&h, "x-cloud-trace-context");
    assert!(
        cloud[0].starts_with("0af7651916cd43dd8448eb211c80319c/"),
        "{cloud:?}"
    );
    assert!(cloud[0].ends_with(";o=1"));
}

#[test]
fn websocket_and_grpc_keep_what_they_need() {
    let ws = [("upgrade", "websocket"), ("connection", "Upgrade")];
    assert!(is_websocket(
        ws.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    ));
    let (h, _) = rewrite(
        &ws,
        Pass {
            upgrade: true,
            te_trailers: false,
        },
    );
    assert_eq!(get(&h, "upgrade"), ["websocket"]);
    assert_eq!(get(&h, "connection"), ["Upgrade"]);
    let (h, _) = rewrite(
        &[("te", "trailers, deflate")],
        Pass {
            upgrade: false,
            te_trailers: true,
        },
    );
    assert_eq!(get(&h, "te"), ["trailers"]);
}

#[test]
fn googles_front_end_keeps_its_paths() {
    for p in [
        "/healthz",
        "/readyz/",
        "/_ah/warmup",
        "/eventlog",
        "/healthz?x=1",
    ] {
        assert!(
            matches!(refuse(b"GET", p.as_bytes()), Some(ProxyError::Reserved(_))),
            "{p}"
        );
    }
    for p in ["/health", "/quiz", "/_ahx", "/api/healthz"] {
        assert!(refuse(b"GET", p.as_bytes()).is_none(), "{p}");
    }
    assert!(matches!(
        refuse(b"TRACE", b"/"),
        Some(ProxyError::MethodNotAllowed { .. })
    ));
    assert!(matches!(refuse(b"PRI", b"*"), Some(ProxyError::BadRequest)));
    assert!(matches!(
        refuse(b"GET", b"http://api.localhost:8080/healthz"),
        Some(ProxyError::Reserved(_))
    ));
}

#[test]
fn the_client_learns_which_instance_answered() {
    let mut out = HeaderMap::new();
    let headers = [
        ("set-cookie", "a=1"),
        ("transfer-encoding", "chunked"),
        ("content-length", "5"),
        ("connection", "x-internal"),
        ("x-internal", "1"),
    ];
    let a = Answerer {
        instance: b"api-1",
        cold: true,
        upgrade: false,
    };
    rewrite_response(
        headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        Some(&a),
        &mut out,
    );
    assert_eq!(out["x-emu-instance"], "api-1");
    assert_eq!(out["x-emu-cold-start"], "true");
    assert_eq!(out["cache-control"], "private");
    for gone in [
        "transfer-encoding",
        "content-length",
        "connection",
        "x-internal",
    ] {
        assert!(!out.contains_key(gone), "{gone}");
    }
}
