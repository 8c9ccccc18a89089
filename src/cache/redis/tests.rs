use super::*;
use tally_dev::tls::TestCa;

fn error_of(url: &str, ca_file: Option<&Path>) -> String {
    format!("{:#}", client(url, ca_file).unwrap_err())
}

#[test]
fn rediss_urls_trust_the_ca_file_or_the_public_roots() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("redis-ca").write_ca(dir.path());
    for (url, ca_file) in [
        ("rediss://tally:s3cret@127.0.0.1:6380/0", Some(ca.as_path())),
        ("rediss://:s3cret@redis.example", None),
        ("redis://tally:s3cret@127.0.0.1:6379/0", None),
    ] {
        let client = client(url, ca_file).unwrap();
        let tls = matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { .. }
        );
        assert_eq!(tls, url.starts_with("rediss://"), "{url}");
    }
}

#[test]
fn a_ca_file_that_cannot_be_used_is_an_error_naming_the_setting_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = "rediss://tally:s3cret@127.0.0.1:6380/0";
    let missing = dir.path().join("missing.crt");
    let message = error_of(url, Some(&missing));
    assert!(
        message.starts_with(&format!(
            "TALLY_REDIS_CA_FILE {}: cannot read it: ",
            missing.display()
        )),
        "{message}"
    );

    let broken = dir.path().join("broken.crt");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot*base64*PRIVATE-WORDS\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let message = error_of(url, Some(&broken));
    assert_eq!(
        message,
        format!(
            "TALLY_REDIS_CA_FILE {}: not a PEM certificate file",
            broken.display()
        )
    );

    // A key is not a certificate, and its contents are never shown.
    let server = TestCa::new("ca").server(dir.path(), "server", &["127.0.0.1"]);
    let message = error_of(url, Some(&server.key));
    assert_eq!(
        message,
        format!(
            "TALLY_REDIS_CA_FILE {}: holds no PEM certificate",
            server.key.display()
        )
    );

    let not_der = dir.path().join("not-der.crt");
    std::fs::write(
        &not_der,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_eq!(
        error_of(url, Some(&not_der)),
        format!(
            "TALLY_REDIS_CA_FILE {}: holds a certificate that is not valid",
            not_der.display()
        )
    );
}

#[test]
fn a_ca_file_with_a_plain_url_and_insecure_tls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("redis-ca").write_ca(dir.path());
    let message = error_of("redis://tally:s3cret@127.0.0.1:6379/0", Some(&ca));
    assert_eq!(
        message,
        "TALLY_REDIS_CA_FILE is set but the Redis URL (redis://tally:***@127.0.0.1:6379/0) \
         is not rediss://: use rediss:// for TLS, or unset TALLY_REDIS_CA_FILE"
    );
    let message = error_of("rediss://tally:s3cret@127.0.0.1:6380/0#insecure", None);
    assert_eq!(
        message,
        "invalid TALLY_REDIS_URL rediss://tally:***@127.0.0.1:6380/0#insecure: \
         #insecure (no certificate check) is not supported; give the server's CA in \
         TALLY_REDIS_CA_FILE instead"
    );
    let message = error_of("redis://tally:s3cret@127.0.0.1:port/0", None);
    assert!(
        message.starts_with("invalid TALLY_REDIS_URL redis://tally:***@127.0.0.1:port/0: "),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}
