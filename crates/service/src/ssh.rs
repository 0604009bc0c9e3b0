//! jitgate's SSH user certificate authority: an active grant on a workflow with `ssh` becomes an
//! OpenSSH user certificate valid for the grant's window (from [`CLOCK_SKEW`] before its start,
//! for hosts whose clocks lag, to its exact end), for the grant's holder as the only principal, with `force-command` set to the approved command for action-bound grants and
//! `source-address` when the policy says so. Servers trust it with `TrustedUserCAKeys`.

use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::{Grant, Timestamp};
use jitgate_store::{Store, StoreError};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{LineEnding, PrivateKey, PublicKey};

/// How long before its grant's start a certificate is valid. A certificate is issued the
/// moment a grant starts (or later); a host whose clock is a few seconds behind jitgate's would
/// see it as not yet valid and refuse it. Backdating `valid_after` by a minute (as Teleport
/// does) lets hosts lag that much. It opens nothing early: a certificate is only issued for a
/// grant that is already active, so its backdated start is always in the past. The end is not
/// moved: `valid_before` is the grant's end, and jitgate's own window stays exact.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// When a certificate for a grant starting at `starts_at` becomes valid.
pub fn valid_after(starts_at: Timestamp) -> Timestamp {
    starts_at - chrono::Duration::seconds(CLOCK_SKEW.as_secs() as i64)
}

/// The longest public key line accepted.
const MAX_PUBLIC_KEY_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("SSH CA key: {0}")]
    Key(String),
    /// The caller's public key is unusable; the message names the fix.
    #[error("{0}")]
    BadPublicKey(String),
}

pub struct SshCa {
    key: PrivateKey,
    public_line: String,
}

fn new_keypair() -> Result<(String, String), SshError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| SshError::Key(format!("no randomness: {e}")))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("jitgate user CA");
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SshError::Key(e.to_string()))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| SshError::Key(e.to_string()))?;
    Ok((private, public))
}

/// What goes into one certificate besides the grant's window.
pub struct CertificateSpec<'a> {
    pub principal: &'a str,
    pub force_command: Option<&'a str>,
    pub source_address: &'a [String],
}

impl SshCa {
    /// Load the CA key from the store, creating it on first use.
    pub async fn load(store: &dyn Store, now: Timestamp) -> Result<SshCa, SshError> {
        if store.ssh_ca().await?.is_none() {
            let (private, public) = new_keypair()?;
            let event = NewEvent {
                kind: EventKind::SshCaCreated,
                at: now,
                actor: SYSTEM_ACTOR.into(),
                subject: SYSTEM_ACTOR.into(),
                request_id: None,
                grant_id: None,
                resource: "jitgate:ssh-ca".into(),
                action: "create".into(),
                comment: Some(public.clone()),
            };
            store.init_ssh_ca(&private, &public, &event).await?;
        }
        let (private, public_line) = store
            .ssh_ca()
            .await?
            .ok_or_else(|| SshError::Key("the CA key was not stored".into()))?;
        let key = PrivateKey::from_openssh(private).map_err(|e| SshError::Key(e.to_string()))?;
        Ok(SshCa { key, public_line })
    }

    /// The CA's public key, one OpenSSH line, for `TrustedUserCAKeys`.
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    /// A user certificate for `public_key_line`, valid for the grant's window (from
    /// [`CLOCK_SKEW`] before its start).
    pub fn issue(&self, grant: &Grant, public_key_line: &str, spec: &CertificateSpec) -> Result<String, SshError> {
        self.issue_for(&grant.id, (grant.starts_at, grant.expires_at), public_key_line, spec)
    }

    fn issue_for(
        &self,
        grant_id: &str,
        (starts_at, expires_at): (Timestamp, Timestamp),
        public_key_line: &str,
        spec: &CertificateSpec,
    ) -> Result<String, SshError> {
        if public_key_line.len() > MAX_PUBLIC_KEY_LEN {
            return Err(SshError::BadPublicKey(
                "public_key: too long; send one OpenSSH public key line".into(),
            ));
        }
        let subject = PublicKey::from_openssh(public_key_line.trim()).map_err(|e| {
            SshError::BadPublicKey(format!(
                "public_key: not an OpenSSH public key line like 'ssh-ed25519 AAAA... comment' ({e})"
            ))
        })?;
        let mut nonce = [0u8; 32];
        getrandom::getrandom(&mut nonce).map_err(|e| SshError::Key(format!("no randomness: {e}")))?;
        let mut serial = [0u8; 8];
        getrandom::getrandom(&mut serial).map_err(|e| SshError::Key(format!("no randomness: {e}")))?;
        let secs = |t: Timestamp| u64::try_from(t.timestamp()).unwrap_or(0);
        let failed = |e: ssh_key::Error| SshError::Key(e.to_string());
        let mut builder = Builder::new(
            nonce.to_vec(),
            subject.key_data().clone(),
            secs(valid_after(starts_at)),
            secs(expires_at),
        )
        .map_err(failed)?;
        builder
            .serial(u64::from_be_bytes(serial))
            .map_err(failed)?
            .cert_type(CertType::User)
            .map_err(failed)?
            .key_id(format!("jitgate grant {grant_id} for {}", spec.principal))
            .map_err(failed)?
            .valid_principal(spec.principal)
            .map_err(failed)?
            .extension("permit-pty", "")
            .map_err(failed)?;
        if let Some(command) = spec.force_command {
            builder.critical_option("force-command", command).map_err(failed)?;
        }
        if !spec.source_address.is_empty() {
            builder
                .critical_option("source-address", spec.source_address.join(","))
                .map_err(failed)?;
        }
        let certificate = builder.sign(&self.key).map_err(failed)?;
        certificate.to_openssh().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_starts_a_minute_early_and_ends_with_its_grant() {
        let (private, public_line) = new_keypair().unwrap_or_else(|e| panic!("{e}"));
        let ca = SshCa {
            key: PrivateKey::from_openssh(private).unwrap_or_else(|e| panic!("{e}")),
            public_line,
        };
        let (_, user_key) = new_keypair().unwrap_or_else(|e| panic!("{e}"));
        let starts = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let ends = starts + chrono::Duration::minutes(30);
        let spec = CertificateSpec {
            principal: "alice",
            force_command: None,
            source_address: &[],
        };
        let line = ca
            .issue_for("grt_1", (starts, ends), &user_key, &spec)
            .unwrap_or_else(|e| panic!("{e}"));
        let certificate = ssh_key::Certificate::from_openssh(&line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            certificate.valid_after(),
            1_800_000_000 - 60,
            "the grant's start less the skew"
        );
        assert_eq!(
            certificate.valid_before(),
            1_800_000_000 + 30 * 60,
            "the grant's end, exactly"
        );
        assert_eq!(certificate.valid_principals(), ["alice".to_string()]);
        assert_eq!(valid_after(starts), starts - chrono::Duration::seconds(60));
    }
}
