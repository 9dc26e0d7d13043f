//! Test certificates made with the `openssl` CLI (Debian package `openssl`): a CA, a second CA
//! that signed nothing (for "the wrong CA" cases), and leaf certificates the first CA signs, in
//! a temporary directory as `<name>.key` and `<name>.pem`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct Pki {
    directory: TempDir,
}

/// Extensions of a server certificate for `subject_alt_name` (`DNS:localhost`, `IP:127.0.0.1`).
pub fn server_extensions(subject_alt_name: &str) -> String {
    format!(
        "subjectAltName = {subject_alt_name}\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
    )
}

/// Extensions of a TLS client certificate.
pub const CLIENT_EXTENSIONS: &str = "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n";

impl Pki {
    /// `ca` and `other-ca`, named `/CN=trailmark test <ca>`.
    pub fn with_cas() -> Pki {
        let pki = Pki {
            directory: tempfile::tempdir().expect("dir"),
        };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=trailmark test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        pki
    }

    /// `<name>.key` and `<name>.pem`: a certificate for `subject` with `extensions`, signed by
    /// `ca`.
    pub fn issue(&self, name: &str, subject: &str, extensions: &str) {
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        std::fs::write(self.path(&format!("{name}.ext")), extensions).expect("write");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.directory.path())
            .output()
            .expect("the openssl CLI (Debian package openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read")
    }
}
