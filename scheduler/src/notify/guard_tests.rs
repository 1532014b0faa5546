use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn guard(networks: &[&str]) -> Guard {
    Guard::new(GuardSettings {
        allow_hosts: vec![
            gatehouse_policy::notify::HostPattern::Exact("localhost".into()),
            gatehouse_policy::notify::HostPattern::Ip(ip("127.0.0.1")),
        ],
        insecure_allow_networks: networks
            .iter()
            .map(|n| n.parse().expect("a CIDR"))
            .collect(),
        ..GuardSettings::default()
    })
}

#[test]
fn internal_addresses_are_classified_in_every_spelling() {
    let cases = [
        ("8.8.8.8", AddressClass::Public),
        ("2606:4700::1111", AddressClass::Public),
        ("0.0.0.0", AddressClass::Unspecified),
        ("::", AddressClass::Unspecified),
        ("127.0.0.1", AddressClass::Loopback),
        ("127.255.0.9", AddressClass::Loopback),
        ("::1", AddressClass::Loopback),
        ("::ffff:127.0.0.1", AddressClass::Loopback),
        ("::127.0.0.1", AddressClass::Loopback),
        ("64:ff9b::7f00:1", AddressClass::Loopback),
        ("2002:7f00:1::", AddressClass::Loopback),
        ("10.1.2.3", AddressClass::Private),
        ("172.31.255.255", AddressClass::Private),
        ("192.168.0.1", AddressClass::Private),
        ("::ffff:10.0.0.1", AddressClass::Private),
        ("fd12:3456::1", AddressClass::Private),
        ("100.64.0.1", AddressClass::SharedCgnat),
        ("100.127.255.254", AddressClass::SharedCgnat),
        ("169.254.1.1", AddressClass::LinkLocal),
        ("fe80::1", AddressClass::LinkLocal),
        ("169.254.169.254", AddressClass::Metadata),
        ("::ffff:169.254.169.254", AddressClass::Metadata),
        ("fd00:ec2::254", AddressClass::Metadata),
        ("100.100.100.200", AddressClass::Metadata),
        ("168.63.129.16", AddressClass::Metadata),
        ("224.0.0.1", AddressClass::Multicast),
        ("ff02::1", AddressClass::Multicast),
        ("255.255.255.255", AddressClass::Broadcast),
        ("192.0.2.1", AddressClass::Reserved),
        ("2001:db8::1", AddressClass::Reserved),
        ("2001:0:4136:e378::1", AddressClass::Reserved),
        ("240.0.0.1", AddressClass::Reserved),
    ];
    for (text, class) in cases {
        assert_eq!(classify(ip(text)), class, "{text}");
    }
}

#[test]
fn loopback_is_refused_unless_its_network_is_opened() {
    let closed = guard(&[]);
    for text in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::127.0.0.1"] {
        assert!(closed.check_ip("h", ip(text)).is_err(), "{text}");
    }
    let open = guard(&["127.0.0.0/8", "::1/128"]);
    for text in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
        assert!(open.check_ip("h", ip(text)).is_ok(), "{text}");
    }
    assert!(open.check_ip("h", ip("10.0.0.1")).is_err());
}

#[test]
fn metadata_needs_an_entry_naming_exactly_it() {
    let broad = guard(&["169.254.0.0/16"]);
    assert!(broad.check_ip("h", ip("169.254.1.1")).is_ok());
    assert!(broad.check_ip("h", ip("169.254.169.254")).is_err());
    let exact = guard(&["169.254.169.254/32"]);
    assert!(exact.check_ip("h", ip("169.254.169.254")).is_ok());
}

#[test]
fn unspecified_and_multicast_are_never_allowed() {
    let open = guard(&["0.0.0.0/0", "::/0"]);
    for text in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
        assert!(open.check_ip("h", ip(text)).is_err(), "{text}");
    }
}

#[test]
fn url_literals_in_other_forms_are_judged_as_the_address_they_denote() {
    let closed = guard(&[]);
    for text in [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
    ] {
        let url = url::Url::parse(text).expect("a URL");
        assert!(
            matches!(closed.check_url(&url), Err(Refusal::AddressRefused { .. })),
            "{text}"
        );
    }
    let other = url::Url::parse("http://example.com/").expect("a URL");
    assert!(matches!(
        closed.check_url(&other),
        Err(Refusal::HostNotAllowed { .. })
    ));
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_resolution() {
    let closed = guard(&[]);
    let err = closed.resolve("localhost", 80).await.expect_err("refused");
    assert!(
        matches!(err, ResolveError::Refused(Refusal::AddressRefused { .. })),
        "{err}"
    );
    let open = guard(&["127.0.0.0/8", "::1/128"]);
    let addrs = open.resolve("localhost", 80).await.expect("allowed");
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
}
