//! jitgate's SSH user certificate authority: an active grant on a workflow with `ssh` becomes an
//! OpenSSH user certificate valid exactly for the grant's window, for the grant's holder as the
//! only principal, with `force-command` set to the approved command for action-bound grants and
//! `source-address` when the policy says so. Servers trust it with `TrustedUserCAKeys`.

use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::{Grant, Timestamp};
use jitgate_store::{Store, StoreError};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{LineEnding, PrivateKey, PublicKey};

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

    /// A user certificate for `public_key_line`, valid for the grant's window.
    pub fn issue(&self, grant: &Grant, public_key_line: &str, spec: &CertificateSpec) -> Result<String, SshError> {
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
            secs(grant.starts_at),
            secs(grant.expires_at),
        )
        .map_err(failed)?;
        builder
            .serial(u64::from_be_bytes(serial))
            .map_err(failed)?
            .cert_type(CertType::User)
            .map_err(failed)?
            .key_id(format!("jitgate grant {} for {}", grant.id, spec.principal))
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
