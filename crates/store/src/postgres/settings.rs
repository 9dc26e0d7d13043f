//! Reading a libpq-style connection URL. tokio-postgres parses most of it, but its `sslmode`
//! knows only `disable`, `prefer` and `require`, and it rejects `sslrootcert` as an unknown
//! option; those two are taken out of the query string here and given libpq's meanings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Host, SslMode as DriverSslMode};

use super::with_causes;

/// How much the connection trusts the network, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is not checked.
    Prefer,
    /// TLS or nothing; the certificate is not checked (checked against `sslrootcert` when one is
    /// given, which libpq does for compatibility with its older releases).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres does before the handshake: whether it asks for TLS at all and whether
    /// a server that declines is refused.
    fn driver_mode(self) -> DriverSslMode {
        match self {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = SettingsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == value)
        .ok_or_else(|| SettingsError::SslMode(value.to_owned()))
    }
}

/// Where the trusted roots for `verify-ca` and `verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// No `sslrootcert`, or libpq 16's `sslrootcert=system`: the Mozilla root set built into
    /// Trailmark (`webpki-roots`), which covers public CAs but not a provider's private one.
    Builtin,
    /// A PEM bundle (`sslrootcert=<path>`), e.g. the provider's CA bundle.
    File(PathBuf),
}

/// A connection URL that did not make sense; each variant names the parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("{0}: not valid UTF-8 once percent-decoded")]
    NotUtf8(&'static str),
    #[error("sslrootcert={path}: {reason}")]
    RootCert { path: String, reason: String },
    /// Anything tokio-postgres rejects (an unknown parameter, a bad port); its message names it.
    #[error("{0}")]
    Url(String),
}

/// A parsed connection URL: what tokio-postgres needs, plus the TLS policy.
#[derive(Debug)]
pub struct ConnectionSettings {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_certs: RootCerts,
}

impl ConnectionSettings {
    /// Parses `url` (`postgres://user:password@host:port/db?sslmode=…&sslrootcert=…`); without
    /// `sslmode` the mode is `prefer`, as in libpq.
    ///
    /// # Errors
    ///
    /// [`SettingsError`] naming the parameter that is unknown or has a bad value.
    pub fn parse(url: &str) -> Result<Self, SettingsError> {
        let (rest, ssl_mode, root_cert) = take_tls_parameters(url)?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|error| SettingsError::Url(with_causes(&error)))?;
        let ssl_mode = match ssl_mode {
            Some(mode) => mode.parse()?,
            // A key-value string (`host=… sslmode=require`) keeps its parameters; tokio-postgres
            // has read the mode from it already.
            None => match config.get_ssl_mode() {
                DriverSslMode::Disable => SslMode::Disable,
                DriverSslMode::Require => SslMode::Require,
                _ => SslMode::Prefer,
            },
        };
        config.ssl_mode(ssl_mode.driver_mode());
        let root_certs = match root_cert.as_deref() {
            None | Some("system") => RootCerts::Builtin,
            Some(path) => RootCerts::File(PathBuf::from(path)),
        };
        Ok(ConnectionSettings {
            config,
            ssl_mode,
            root_certs,
        })
    }

    /// Where the connection goes and how, for messages: `host:port, … (sslmode=…)`, plus the
    /// roots trusted when the mode checks certificates. Never the user or password.
    pub fn describe(&self) -> String {
        let (hosts, addresses, ports) = (
            self.config.get_hosts(),
            self.config.get_hostaddrs(),
            self.config.get_ports(),
        );
        // tokio-postgres dials `hostaddr` where given, else `host`; one port serves every host.
        let targets: Vec<String> = (0..hosts.len().max(addresses.len()))
            .map(|index| {
                let host = match (addresses.get(index), hosts.get(index)) {
                    (Some(address), _) => address.to_string(),
                    (None, Some(Host::Tcp(name))) => name.clone(),
                    (None, Some(Host::Unix(path))) => path.display().to_string(),
                    (None, None) => String::new(),
                };
                let port = ports
                    .get(index)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect();
        let roots = match (self.ssl_mode, &self.root_certs) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, RootCerts::Builtin) => {
                String::new()
            }
            (_, RootCerts::File(path)) => format!(", sslrootcert={}", path.display()),
            (_, RootCerts::Builtin) => ", trusting the built-in Mozilla roots".into(),
        };
        format!("{} (sslmode={}{roots})", targets.join(", "), self.ssl_mode)
    }
}

/// Splits `sslmode` and `sslrootcert` off a URL's query string; the rest of the URL is left
/// byte for byte as it was.
fn take_tls_parameters(
    url: &str,
) -> Result<(String, Option<String>, Option<String>), SettingsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut ssl_mode, mut root_cert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // As libpq and tokio-postgres, a parameter given twice takes its last value.
        match percent_decode_str(key).decode_utf8_lossy().as_ref() {
            "sslmode" => ssl_mode = Some(decode("sslmode", value)?),
            "sslrootcert" => root_cert = Some(decode("sslrootcert", value)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, ssl_mode, root_cert))
}

fn decode(parameter: &'static str, value: &str) -> Result<String, SettingsError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| SettingsError::NotUtf8(parameter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> SslMode {
        ConnectionSettings::parse(url).expect("parses").ssl_mode
    }

    #[test]
    fn every_libpq_sslmode_is_understood_and_prefer_is_the_default() {
        let base = "postgres://app@db.internal:5433/audit";
        assert_eq!(mode_of(base), SslMode::Prefer);
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(mode_of(&format!("{base}?sslmode={value}")), mode, "{value}");
        }
    }

    #[test]
    fn the_driver_asks_for_tls_as_the_mode_says() {
        for (value, driver) in [
            ("disable", DriverSslMode::Disable),
            ("prefer", DriverSslMode::Prefer),
            ("require", DriverSslMode::Require),
            ("verify-ca", DriverSslMode::Require),
            ("verify-full", DriverSslMode::Require),
        ] {
            let settings =
                ConnectionSettings::parse(&format!("postgres://h/db?sslmode={value}")).unwrap();
            assert_eq!(settings.config.get_ssl_mode(), driver, "{value}");
        }
    }

    #[test]
    fn a_bad_sslmode_is_an_error_naming_the_parameter_and_the_choices() {
        for bad in ["verify_full", "VERIFY-FULL", "allow-ish", ""] {
            let error = ConnectionSettings::parse(&format!("postgres://h/db?sslmode={bad}"))
                .expect_err(bad)
                .to_string();
            assert!(error.starts_with(&format!("sslmode={bad:?}")), "{error}");
            assert!(error.contains("verify-full"), "{error}");
        }
    }

    #[test]
    fn sslrootcert_is_taken_out_percent_decoded_and_system_means_builtin() {
        let settings = ConnectionSettings::parse(
            "postgres://h/db?sslrootcert=%2Fetc%2Fssl%2Fmy%20ca.pem&sslmode=verify-full&application_name=x",
        )
        .expect("parses");
        assert_eq!(
            settings.root_certs,
            RootCerts::File(PathBuf::from("/etc/ssl/my ca.pem"))
        );
        assert_eq!(settings.ssl_mode, SslMode::VerifyFull);
        assert_eq!(settings.config.get_application_name(), Some("x"));
        let system = ConnectionSettings::parse("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!(system.root_certs, RootCerts::Builtin);
        let none = ConnectionSettings::parse("postgres://h/db").unwrap();
        assert_eq!(none.root_certs, RootCerts::Builtin);
    }

    #[test]
    fn the_last_of_a_repeated_parameter_wins_as_in_libpq() {
        assert_eq!(
            mode_of("postgres://h/db?sslmode=disable&sslmode=verify-ca"),
            SslMode::VerifyCa
        );
    }

    #[test]
    fn other_parameters_reach_tokio_postgres_which_names_the_unknown_ones() {
        let settings = ConnectionSettings::parse(
            "postgres://u:p@h1,h2:6000/db?sslmode=require&connect_timeout=7",
        )
        .expect("parses");
        assert_eq!(settings.config.get_dbname(), Some("db"));
        assert_eq!(settings.config.get_password(), Some(&b"p"[..]));
        assert_eq!(
            settings.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        let error = ConnectionSettings::parse("postgres://h/db?sslmode=require&sslcrl=x.pem")
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("sslcrl"), "{error}");
        let error = ConnectionSettings::parse("postgres://h/db?sslrootcert=%FF")
            .expect_err("not UTF-8")
            .to_string();
        assert!(error.starts_with("sslrootcert"), "{error}");
    }

    #[test]
    fn a_key_value_string_keeps_the_modes_tokio_postgres_knows() {
        let settings = ConnectionSettings::parse("host=h dbname=db sslmode=require").unwrap();
        assert_eq!(settings.ssl_mode, SslMode::Require);
        let settings = ConnectionSettings::parse("host=h dbname=db sslmode=disable").unwrap();
        assert_eq!(settings.ssl_mode, SslMode::Disable);
    }

    #[test]
    fn the_description_names_hosts_ports_and_mode_but_not_the_password() {
        let settings =
            ConnectionSettings::parse("postgres://u:secret@h1:6000,h2/db?sslmode=verify-full")
                .unwrap();
        assert_eq!(
            settings.describe(),
            "h1:6000, h2:5432 (sslmode=verify-full, trusting the built-in Mozilla roots)"
        );
        let one_port = ConnectionSettings::parse("postgres://u:secret@db.internal/db").unwrap();
        assert_eq!(one_port.describe(), "db.internal:5432 (sslmode=prefer)");
        let bundle =
            ConnectionSettings::parse("postgres://h/db?sslmode=require&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(
            bundle.describe(),
            "h:5432 (sslmode=require, sslrootcert=/ca.pem)"
        );
    }
}
