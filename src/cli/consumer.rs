//! `consumer`: consumers (OAuth clients) in the store.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Lines;
use super::context::{ConfigArg, server_section, with_store};
use super::table::{Cell, Format, Table, record};
use crate::config::read_secret_file;
use crate::server::admin::{self, AdminError, ConsumerSpec, ConsumerView, CreatedConsumer};

#[derive(Subcommand)]
pub(super) enum ConsumerCommand {
    /// Create a consumer; a confidential one gets a generated secret, printed once, unless --secret-file gives one.
    Create {
        /// A machine name; default: a UUID v4.
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        fields: ConsumerFields,
    },
    /// List consumers: client_id, kind, source (config or cli), label, scopes.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Show a consumer (never its secret).
    Show {
        /// The consumer's client_id.
        client_id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Change a consumer made with the CLI; list flags replace the whole list.
    Update {
        /// The consumer's client_id.
        client_id: String,
        #[command(flatten)]
        fields: ConsumerFields,
        /// Generate a new secret (printed once); the old one stops working.
        #[arg(long, conflicts_with = "secret_file")]
        new_secret: bool,
        /// Make the consumer confidential again (it gets a new secret).
        #[arg(long, conflicts_with = "public")]
        confidential: bool,
        /// Make the consumer third party again (the user sees a consent page).
        #[arg(long, conflicts_with = "first_party")]
        third_party: bool,
    },
    /// Delete a consumer made with the CLI, with its tokens.
    Delete {
        /// The consumer's client_id.
        client_id: String,
    },
}

#[derive(Args)]
pub(super) struct ConsumerFields {
    /// A label identifying the integration.
    #[arg(long)]
    label: Option<String>,
    /// Public consumer: its secret is not validated (PKCE required, no client_credentials).
    #[arg(long)]
    public: bool,
    /// First party: no consent page (default: third party, the user sees one).
    #[arg(long)]
    first_party: bool,
    /// The user client_credentials acts as.
    #[arg(long)]
    user_id: Option<String>,
    /// An exact redirect URI (repeat for more).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// An exact URI to return to after RP-initiated logout (repeat for more).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout tokens are posted (an empty value clears it).
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// An origin allowed to call from a browser (repeat for more).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// A role of server.roles (repeat for more).
    #[arg(long = "scope", value_name = "ROLE")]
    scopes: Vec<String>,
    /// A grant type (repeat for more); default: authorization_code and refresh_token.
    #[arg(long = "grant-type", value_name = "GRANT")]
    grant_types: Vec<String>,
    /// farmOS: always grant the authorizing user's roles.
    #[arg(long)]
    grant_user_access: bool,
    /// farmOS: grant only the requested scopes.
    #[arg(long)]
    limit_requested_access: bool,
    /// farmOS: never grant more than the user has.
    #[arg(long)]
    limit_user_access: bool,
    /// Use the secret in this file (first line; 16 characters or more, kept as an argon2 hash) instead of a generated one.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

impl ConsumerFields {
    /// Flags given become `Some`; absent flags leave the field alone.
    fn spec(self) -> Result<ConsumerSpec, AdminError> {
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let flag = |b: bool| b.then_some(true);
        let secret = match &self.secret_file {
            Some(file) => Some(
                read_secret_file(file)
                    .map_err(|e| AdminError::Usage(format!("cannot read {}: {e}", file.display())))?,
            ),
            None => None,
        };
        Ok(ConsumerSpec {
            label: self.label,
            public: flag(self.public),
            third_party: self.first_party.then_some(false),
            user_id: self.user_id,
            redirect_uris: list(self.redirect_uris),
            allowed_origins: list(self.allowed_origins),
            scopes: list(self.scopes),
            grant_types: list(self.grant_types),
            grant_user_access: flag(self.grant_user_access),
            limit_requested_access: flag(self.limit_requested_access),
            limit_user_access: flag(self.limit_user_access),
            secret,
            post_logout_redirect_uris: list(self.post_logout_redirect_uris),
            backchannel_logout_uri: self.backchannel_logout_uri,
        })
    }
}

/// The client ID and, once, a generated secret.
fn created(c: CreatedConsumer) -> Vec<String> {
    let mut out = vec![format!("client_id: {}", c.consumer.client_id)];
    if let Some(secret) = c.secret {
        out.push(format!("client_secret: {}", secret.expose()));
        out.push("(the secret is shown only now; it is stored as a hash)".into());
    }
    out
}

/// Runs a `consumer` command on the store of `config` (which needs a `server:` section).
pub(super) async fn run(config: &ConfigArg, command: ConsumerCommand) -> Lines {
    let loaded = config.load()?;
    let server = server_section(&loaded, true)?;
    with_store(&loaded, async |store| {
        let store = store.as_ref();
        Ok(match command {
            ConsumerCommand::Create { client_id, fields } => {
                created(admin::create_consumer(store, &server, client_id, &fields.spec()?).await?)
            }
            ConsumerCommand::List { format } => {
                let mut table = Table::new(&["client_id", "kind", "source", "label", "scopes"]);
                for ConsumerView(c) in admin::list_consumers(store).await? {
                    table.push(vec![
                        Cell::Text(c.client_id),
                        Cell::text(if c.confidential { "confidential" } else { "public" }),
                        Cell::text(if c.managed_by_config { "config" } else { "cli" }),
                        Cell::Text(c.label),
                        Cell::List(c.scopes),
                    ]);
                }
                return table.print(format);
            }
            ConsumerCommand::Show { client_id, format } => {
                return show(&admin::show_consumer(store, &client_id).await?, format);
            }
            ConsumerCommand::Update { client_id, fields, new_secret, confidential, third_party } => {
                let mut spec = fields.spec()?;
                if confidential {
                    spec.public = Some(false);
                }
                if third_party {
                    spec.third_party = Some(true);
                }
                created(admin::update_consumer(store, &server, &client_id, &spec, new_secret).await?)
            }
            ConsumerCommand::Delete { client_id } => {
                admin::delete_consumer(store, &client_id).await?;
                vec![format!("deleted consumer {client_id}")]
            }
        })
    })
    .await
}

/// Every field of a consumer but its secret, which is only described.
fn show(view: &ConsumerView, format: Format) -> Lines {
    let c = &view.0;
    let ttl = |t: Option<u64>| t.map_or(Cell::text("server default"), |s| Cell::Number(s as i64));
    record(
        vec![
            ("client_id", Cell::text(&c.client_id)),
            ("label", Cell::text(&c.label)),
            ("confidential", Cell::Flag(c.confidential)),
            ("secret", Cell::text(view.secret_kind())),
            ("managed_by_config", Cell::Flag(c.managed_by_config)),
            ("user_id", Cell::text(c.user_id.clone().unwrap_or_default())),
            ("third_party", Cell::Flag(c.third_party)),
            ("scopes", Cell::List(c.scopes.clone())),
            ("grant_types", Cell::List(c.grant_types.clone())),
            ("redirect_uris", Cell::List(c.redirect_uris.clone())),
            ("allowed_origins", Cell::List(c.allowed_origins.clone())),
            ("post_logout_redirect_uris", Cell::List(c.post_logout_redirect_uris.clone())),
            ("backchannel_logout_uri", Cell::text(c.backchannel_logout_uri.clone().unwrap_or_default())),
            ("access_token_ttl", ttl(c.access_token_ttl)),
            ("refresh_token_ttl", ttl(c.refresh_token_ttl)),
            ("grant_user_access", Cell::Flag(c.grant_user_access)),
            ("limit_requested_access", Cell::Flag(c.limit_requested_access)),
            ("limit_user_access", Cell::Flag(c.limit_user_access)),
        ],
        format,
    )
}
