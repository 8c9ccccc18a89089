//! Throwaway certificate authorities for the TLS tests: a private CA, the
//! certificates it signs for a server on loopback, and files in a directory
//! the servers (PostgreSQL, Redis) and tally can be pointed at.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that lives as long as the test.
#[derive(Debug)]
pub struct TestCa {
    name: String,
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

/// PEM files written to disk: a certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA whose subject's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = named(name);
        let key = KeyPair::generate().expect("generate the CA key");
        let pem = params.self_signed(&key).expect("self-sign the CA").pem();
        TestCa {
            name: name.to_owned(),
            key,
            params,
            pem,
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `dir/<name>.crt` and returns its path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.crt", self.name));
        fs::write(&path, &self.pem).expect("write the CA certificate");
        path
    }

    /// A server certificate for `names` (host names or IP addresses),
    /// written as `dir/<file>.crt` and `dir/<file>.key` (mode 0600, which
    /// PostgreSQL insists on).
    pub fn server(&self, dir: &Path, file: &str, names: &[&str]) -> CertFiles {
        self.issue(dir, file, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `user`.
    pub fn client(&self, dir: &Path, user: &str) -> CertFiles {
        self.issue(dir, user, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name = named(file);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("generate a key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the certificate");
        let files = CertFiles {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        fs::write(&files.cert, cert.pem()).expect("write the certificate");
        write_private(&files.key, &key.serialize_pem());
        files
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn write_private(path: &Path, pem: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create the key file");
    file.write_all(pem.as_bytes()).expect("write the key");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_certificate_is_signed_by_its_ca_and_names_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("tally-test-ca");
        let files = ca.server(dir.path(), "server", &["localhost", "127.0.0.1"]);
        let cert = fs::read_to_string(&files.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        let key = fs::read_to_string(&files.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            ca.write_ca(dir.path()),
            dir.path().join("tally-test-ca.crt")
        );
    }
}
