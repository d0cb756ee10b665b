//! `consumer`: consumers (OAuth clients) in the store.

use clap::{Args, Subcommand};

use super::Lines;
use super::context::{ConfigArg, server_section, with_store};
use crate::server::admin::{self, ConsumerSpec, CreatedConsumer};

#[derive(Subcommand)]
pub(super) enum ConsumerCommand {
    /// Create a consumer; a confidential one gets a generated secret, printed once.
    Create {
        /// A machine name; default: a UUID v4.
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        fields: ConsumerFields,
    },
    /// List consumers: client_id, kind, source (config or cli), label.
    List,
    /// Show a consumer (never its secret).
    Show { client_id: String },
    /// Change a consumer made with the CLI; list flags replace the whole list.
    Update {
        client_id: String,
        #[command(flatten)]
        fields: ConsumerFields,
        /// Generate a new secret (printed once); the old one stops working.
        #[arg(long)]
        new_secret: bool,
        /// Make the consumer confidential again (it gets a new secret).
        #[arg(long, conflicts_with = "public")]
        confidential: bool,
        /// Make the consumer third party again (the user sees a consent page).
        #[arg(long, conflicts_with = "first_party")]
        third_party: bool,
    },
    /// Delete a consumer made with the CLI, with its tokens.
    Delete { client_id: String },
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
}

impl ConsumerFields {
    /// Flags given become `Some`; absent flags leave the field alone.
    fn spec(self) -> ConsumerSpec {
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let flag = |b: bool| b.then_some(true);
        ConsumerSpec {
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
        }
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
                created(admin::create_consumer(store, &server, client_id, &fields.spec()).await?)
            }
            ConsumerCommand::List => admin::list_consumers(store).await?.iter().map(|c| c.line()).collect(),
            ConsumerCommand::Show { client_id } => {
                vec![admin::show_consumer(store, &client_id).await?.to_string()]
            }
            ConsumerCommand::Update { client_id, fields, new_secret, confidential, third_party } => {
                let mut spec = fields.spec();
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
