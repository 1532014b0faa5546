use super::*;
use std::time::UNIX_EPOCH;

/// 2026-12-07T03:45:01.161741Z
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_796_615_101_161_741)
}

fn record() -> AccessRecord<'static> {
    AccessRecord {
        request_id: "f205ec09cf10-1",
        client: Some("127.0.0.1".parse().expect("address")),
        method: "GET",
        path: "/",
        route: "app",
        status: 200,
        denial: "-",
        user: "-",
        auth: "-",
        identity_source: "-",
        rule: "route app: public",
        error: "-",
        duration: Duration::from_micros(474_608),
        bytes_in: 0,
        bytes_out: 100,
    }
}

fn line(record: &AccessRecord<'_>, format: LogFormat) -> String {
    let mut out = Vec::new();
    record.write_line(format, when(), &mut out);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn the_human_line_has_tracings_layout() {
    assert_eq!(
        line(&record(), LogFormat::Human),
        "2026-12-07T03:45:01.161741Z  INFO gatehouse::access: request \
         request_id=f205ec09cf10-1 client=127.0.0.1 method=GET path=/ route=\"app\" \
         status=200 denial=\"-\" user=\"-\" auth=\"-\" identity_source=\"-\" \
         rule=\"route app: public\" error=- duration_ms=474.608 bytes_in=0 bytes_out=100\n"
    );
}

#[test]
fn the_json_line_has_the_keys_and_types_tracing_wrote() {
    let text = line(&record(), LogFormat::Json);
    assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
    let value: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert_eq!(
        value,
        serde_json::json!({
            "timestamp": "2026-12-07T03:45:01.161741Z",
            "level": "INFO",
            "message": "request",
            "request_id": "f205ec09cf10-1",
            "client": "127.0.0.1",
            "method": "GET",
            "path": "/",
            "route": "app",
            "status": 200,
            "denial": "-",
            "user": "-",
            "auth": "-",
            "identity_source": "-",
            "rule": "route app: public",
            "error": "-",
            "duration_ms": 474.608,
            "bytes_in": 0,
            "bytes_out": 100,
            "target": "gatehouse::access",
        })
    );
}

#[test]
fn no_client_address_is_an_empty_value() {
    let record = AccessRecord {
        client: None,
        ..record()
    };
    assert!(line(&record, LogFormat::Human).contains(" client= method=GET"));
    let json: serde_json::Value =
        serde_json::from_str(&line(&record, LogFormat::Json)).expect("JSON");
    assert_eq!(json["client"], "");
}

#[test]
fn values_a_client_chose_cannot_break_the_line_or_forge_a_field() {
    let user = "eve\" status=200 x=\"\n2026-01-01T00:00:00Z  INFO forged\\";
    let path = "/a b\"c\u{7f}\u{e9}";
    let record = AccessRecord {
        user,
        path,
        method: "PO\tST",
        ..record()
    };
    let human = line(&record, LogFormat::Human);
    assert_eq!(human.matches('\n').count(), 1, "{human}");
    assert!(human.contains(&format!(" user={user:?} ")), "{human}");
    assert!(human.contains(&format!(" path={path:?} ")), "{human}");
    assert!(human.contains(" method=\"PO\\tST\" "), "{human}");
    assert!(human.ends_with(" bytes_out=100\n"), "{human}");

    let json = line(&record, LogFormat::Json);
    assert_eq!(json.matches('\n').count(), 1, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["user"], user);
    assert_eq!(value["path"], path);
    assert_eq!(value["status"], 200);
}

#[test]
fn durations_are_milliseconds_to_the_microsecond() {
    for (micros, text) in [
        (0, "0.000"),
        (7, "0.007"),
        (1_000, "1.000"),
        (1_234_567, "1234.567"),
        (60_000_010, "60000.010"),
    ] {
        let mut out = Vec::new();
        push_millis(Duration::from_micros(micros), &mut out);
        assert_eq!(String::from_utf8(out).expect("utf-8"), text);
    }
}

#[test]
fn ipv6_clients_are_written_as_std_writes_them() {
    let record = AccessRecord {
        client: Some("2001:db8::7".parse().expect("address")),
        ..record()
    };
    assert!(line(&record, LogFormat::Human).contains(" client=2001:db8::7 "));
}

#[test]
fn timestamps_are_right_across_seconds_and_at_whole_seconds() {
    let mut out = Vec::new();
    for micros in [
        1_796_615_101_161_741u64,
        1_796_615_101_999_999,
        1_796_615_102_000_000,
        1_796_615_102_000_007,
        1_796_615_101_000_001,
        86_399_999_999,
    ] {
        out.clear();
        let when = UNIX_EPOCH + Duration::from_micros(micros);
        push_timestamp(when, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf-8"),
            humantime::format_rfc3339_micros(when).to_string()
        );
    }
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for text in [
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "10.20.0.3",
        "::1",
        "2001:db8::8a2e:370:7334",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        "::ffff:192.0.2.128",
    ] {
        let ip: IpAddr = text.parse().expect("address");
        let mut written = AddressText::new();
        written.write(ip);
        assert_eq!(written.as_str(), ip.to_string());
    }
}
