//! Signed, expiring download links for export files, served by Trailmark itself.
//!
//! Format: `{public_url}/audit_logs/exports/{id}/download?expires={unix seconds}&signature={hex}`
//! where `signature = HMAC-SHA256(link_key, "{id}\n{expires}")` and
//! `link_key = HMAC-SHA256(secrets_key, "trailmark-export-links-v1")`, so the secrets key itself
//! never signs anything that leaves the server. The link is the credential (no
//! API key is needed to download, as with WorkOS's and S3's presigned URLs); it names one export
//! id and the server derives the file path from that id alone, so changing the id in a link of
//! organization A's cannot reach organization B's file without a new signature.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use trailmark_domain::Timestamp;

/// Signs and checks download links.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
    ttl: Duration,
    public_url: String,
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    Tampered,
    Expired,
}

impl LinkSigner {
    pub fn new(secrets_key: &[u8; 32], ttl: Duration, public_url: &str) -> Self {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secrets_key)
            .expect("HMAC takes keys of any length");
        derive.update(b"trailmark-export-links-v1");
        LinkSigner {
            key: derive.finalize().into_bytes().into(),
            ttl,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// A fresh link to `export_id`, valid for the configured time from `now`.
    pub fn link(&self, export_id: &str, now: Timestamp) -> String {
        let expires = now.unix_millis() / 1000 + self.ttl.as_secs() as i64;
        format!(
            "{}/audit_logs/exports/{export_id}/download?expires={expires}&signature={}",
            self.public_url,
            hex::encode(self.mac(export_id, expires).finalize().into_bytes())
        )
    }

    /// # Errors
    ///
    /// [`LinkRefusal::Tampered`] if the signature does not match the id and expiry (checked in
    /// constant time), [`LinkRefusal::Expired`] if it matches but the time has passed.
    pub fn verify(
        &self,
        export_id: &str,
        expires: &str,
        signature: &str,
        now: Timestamp,
    ) -> Result<(), LinkRefusal> {
        let expires: i64 = expires.parse().map_err(|_| LinkRefusal::Tampered)?;
        let signature = hex::decode(signature).map_err(|_| LinkRefusal::Tampered)?;
        self.mac(export_id, expires)
            .verify_slice(&signature)
            .map_err(|_| LinkRefusal::Tampered)?;
        if now.unix_millis() / 1000 > expires {
            Err(LinkRefusal::Expired)
        } else {
            Ok(())
        }
    }

    fn mac(&self, export_id: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(export_id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(link: &str) -> (String, String, String) {
        let (path, query) = link.split_once('?').expect("query");
        let id = path.rsplit('/').nth(1).expect("id").to_owned();
        let mut expires = String::new();
        let mut signature = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.into(),
                Some(("signature", v)) => signature = v.into(),
                _ => {}
            }
        }
        (id, expires, signature)
    }

    #[test]
    fn links_verify_until_they_expire_and_not_when_altered() {
        let signer = LinkSigner::new(&[1; 32], Duration::from_secs(600), "http://host/");
        let now = Timestamp::from_unix_millis(1_000_000);
        let link = signer.link("audit_log_export_A", now);
        assert!(link.starts_with(
            "http://host/audit_logs/exports/audit_log_export_A/download?expires=1600&signature="
        ));
        let (id, expires, signature) = parts(&link);
        assert_eq!(signer.verify(&id, &expires, &signature, now), Ok(()));
        assert_eq!(
            signer.verify(&id, &expires, &signature, now.plus_millis(601_000)),
            Err(LinkRefusal::Expired)
        );
        assert_eq!(
            signer.verify("audit_log_export_B", &expires, &signature, now),
            Err(LinkRefusal::Tampered)
        );
        assert_eq!(
            signer.verify(&id, "999999", &signature, now),
            Err(LinkRefusal::Tampered)
        );
        assert_eq!(
            signer.verify(&id, &expires, "00", now),
            Err(LinkRefusal::Tampered)
        );
        let other_key = LinkSigner::new(&[2; 32], Duration::from_secs(600), "http://host");
        assert_eq!(
            other_key.verify(&id, &expires, &signature, now),
            Err(LinkRefusal::Tampered)
        );
    }
}
