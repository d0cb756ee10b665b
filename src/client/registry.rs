//! Client registrations: a provider plus the `client_id` and secret it
//! issued. Those in the file (`client.clients`) are read at start; those made
//! with `oauth-sidecar client create` live in the store (secret encrypted)
//! and are seen without a restart. A name in the file wins over the store.

use std::sync::Arc;

use super::ClientError;
use super::crypto::TokenCipher;
use super::protocol::Credentials;
use super::provider::{self, Provider};
use crate::config::Secret;
use crate::config::client::{ClientConfig, ClientSecrets, ProviderConfig};
use crate::store::{ClientRegistrationRecord, ClientStore};

/// A client registration, resolved against its provider.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The machine name (`/oauth/start/{name}`).
    pub name: String,
    /// Shown to people.
    pub label: String,
    /// The provider, overrides applied.
    pub provider: Provider,
    /// The credentials the provider issued.
    pub creds: Credentials,
    /// The tenant, if set for this client.
    pub tenant: Option<String>,
    /// The scopes asked for by default.
    pub scopes: Vec<String>,
    /// `config` or `cli`.
    pub source: &'static str,
}

/// Where client registrations are found.
pub struct Registry {
    providers: Vec<ProviderConfig>,
    local_issuer: String,
    from_file: Vec<Registration>,
    store: Arc<dyn ClientStore>,
    cipher: TokenCipher,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("from_file", &self.from_file.len()).finish_non_exhaustive()
    }
}

/// The associated data of a stored client secret.
fn secret_place(name: &str) -> String {
    format!("client:{name}:secret")
}

impl Registry {
    /// The file's registrations; `local_issuer` is the `demo` provider's issuer.
    pub fn new(
        config: &ClientConfig,
        secrets: &ClientSecrets,
        local_issuer: &str,
        store: Arc<dyn ClientStore>,
        cipher: TokenCipher,
    ) -> Self {
        let from_file = config
            .clients
            .iter()
            .filter_map(|c| {
                let provider = provider::find(&config.providers, local_issuer, &c.provider)?;
                Some(Registration {
                    name: c.name.value.clone(),
                    label: c.label.clone(),
                    scopes: c.scopes.clone().unwrap_or_else(|| provider.scopes.clone()),
                    tenant: c.tenant.clone().or_else(|| provider.tenant.clone()),
                    creds: Credentials {
                        client_id: c.client_id.value.clone(),
                        client_secret: secrets.client_secrets.get(&c.name.value).cloned(),
                    },
                    provider,
                    source: "config",
                })
            })
            .collect();
        Registry {
            providers: config.providers.clone(),
            local_issuer: local_issuer.to_owned(),
            from_file,
            store,
            cipher,
        }
    }

    /// Every provider, presets first.
    pub fn providers(&self) -> Vec<Provider> {
        provider::all(&self.providers, &self.local_issuer)
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<Provider> {
        provider::find(&self.providers, &self.local_issuer, name)
    }

    fn resolve(&self, r: ClientRegistrationRecord) -> Result<Option<Registration>, ClientError> {
        let Some(provider) = self.provider(&r.provider) else {
            tracing::warn!(client = %r.name, provider = %r.provider, "a stored client names an unknown provider; skipped");
            return Ok(None);
        };
        let client_secret = match &r.client_secret {
            Some(sealed) => Some(Secret::new(self.cipher.open_text(&secret_place(&r.name), sealed)?)),
            None => None,
        };
        Ok(Some(Registration {
            label: r.label,
            scopes: r.scopes.unwrap_or_else(|| provider.scopes.clone()),
            tenant: r.tenant.or_else(|| provider.tenant.clone()),
            creds: Credentials { client_id: r.client_id, client_secret },
            name: r.name,
            provider,
            source: "cli",
        }))
    }

    /// The registration named `name`.
    pub async fn get(&self, name: &str) -> Result<Option<Registration>, ClientError> {
        if let Some(r) = self.from_file.iter().find(|r| r.name == name) {
            return Ok(Some(r.clone()));
        }
        let stored = self.store.client_registrations().await?;
        match stored.into_iter().find(|r| r.name == name) {
            Some(r) => self.resolve(r),
            None => Ok(None),
        }
    }

    /// Every registration: the file's, then the store's, by name.
    pub async fn list(&self) -> Result<Vec<Registration>, ClientError> {
        let mut out = self.from_file.clone();
        for r in self.store.client_registrations().await? {
            if out.iter().any(|x| x.name == r.name) {
                continue;
            }
            out.extend(self.resolve(r)?);
        }
        Ok(out)
    }

    /// Stores a registration made with the CLI.
    #[allow(clippy::too_many_arguments)] // the fields of `client create`
    pub async fn create(
        &self,
        name: &str,
        provider: &str,
        client_id: &str,
        secret: Option<&Secret>,
        tenant: Option<String>,
        scopes: Option<Vec<String>>,
        label: String,
    ) -> Result<(), ClientError> {
        if !crate::config::client::is_machine_name(name) {
            return Err(ClientError::Usage(format!(
                "`{name}` is not a machine name (letters, digits, `_.-`)"
            )));
        }
        if self.provider(provider).is_none() {
            let names: Vec<String> = self.providers().into_iter().map(|p| p.name).collect();
            return Err(ClientError::Usage(format!(
                "unknown provider `{provider}`: expected one of {}",
                names.join(", ")
            )));
        }
        if self.get(name).await?.is_some() {
            return Err(ClientError::Usage(format!("client `{name}` exists already")));
        }
        let record = ClientRegistrationRecord {
            name: name.to_owned(),
            provider: provider.to_owned(),
            label,
            client_id: client_id.to_owned(),
            client_secret: secret.map(|s| self.cipher.seal(&secret_place(name), s.expose().as_bytes())),
            tenant,
            scopes,
            created_at: crate::clock::now(),
        };
        self.store.put_client_registration(&record).await?;
        Ok(())
    }

    /// Deletes a CLI-made registration and its tokens.
    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        if self.from_file.iter().any(|r| r.name == name) {
            return Err(ClientError::Usage(format!(
                "client `{name}` is in the configuration file (client.clients): remove it there"
            )));
        }
        if self.store.delete_client_registration(name).await? {
            Ok(())
        } else {
            Err(ClientError::NotFound(format!("no client `{name}`")))
        }
    }
}
