//! A throwaway PKI made with openssl: a CA, a server certificate for one name, and a
//! client certificate, for peers that speak TLS (unbound's DoT, Mosquitto's mqtts).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(ok.success(), "openssl {args:?} failed");
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A key and a certificate for `subject`, signed by the CA, with `extensions`.
fn issue(dir: &Path, stem: &str, subject: &str, extensions: &str) {
    let (key, csr, ext, pem) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.ext"),
        format!("{stem}.pem"),
    );
    let subj = format!("/CN={subject}");
    let mut args = vec!["req", "-keyout", &key, "-out", &csr, "-subj", &subj];
    args.extend(EC);
    openssl(dir, &args);
    std::fs::write(dir.join(&ext), extensions).expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ],
    );
}

impl Pki {
    /// Writes everything into `dir`; the server certificate is for `name`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut args = vec![
            "req", "-x509", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
        ];
        args.extend(EC);
        args.extend([
            "-subj",
            "/CN=Cartable test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(dir, &args);
        issue(
            dir,
            "server",
            name,
            &format!(
                "subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            ),
        );
        issue(
            dir,
            "client",
            "box-test",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}
