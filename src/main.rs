//! The `oauth-sidecar` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use oauth_sidecar::server::admin::{self, AdminError, ConsumerSpec, UserChange};

/// Exit status for a configuration that does not load.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "oauth-sidecar",
    version,
    about = "A reverse-proxy sidecar that gives a legacy application OAuth2 on both sides",
    after_help = "Examples:\n  \
        oauth-sidecar serve --config config/sidecar.example.yaml\n  \
        OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml oauth-sidecar serve\n  \
        oauth-sidecar check-config config/sidecar.example.yaml\n  \
        oauth-sidecar consumer create --config sidecar.yaml --client-id reporting --user-id reporter \\\n      \
          --scope farm_viewer --grant-type client_credentials\n  \
        oauth-sidecar user add --config sidecar.yaml alice --role farm_viewer < password.txt\n  \
        oauth-sidecar keys rotate --config sidecar.yaml\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label deploy-bot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar until SIGTERM or SIGINT.
    #[command(after_help = "Example:\n  oauth-sidecar serve --config config/sidecar.example.yaml")]
    Serve {
        /// The YAML configuration file.
        #[arg(long, short, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file: print what would run, or every error found (exit status 2).
    #[command(after_help = "Example:\n  oauth-sidecar check-config config/sidecar.example.yaml")]
    CheckConfig {
        /// The YAML configuration file.
        #[arg(env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        file: PathBuf,
    },
    /// Exit 0 when the sidecar this configuration describes answers its health endpoint (for container health checks).
    #[command(
        after_help = "Example:\n  OAUTH_SIDECAR_CONFIG=/etc/oauth-sidecar/sidecar.yaml oauth-sidecar healthcheck"
    )]
    Healthcheck {
        /// The YAML configuration file of the running sidecar.
        #[arg(long, short, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage consumers (OAuth clients) in the store.
    Consumer {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Manage local users in the store.
    User {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Admin API tokens, for the JSON API under the admin path (`/admin/api/`).
    #[command(after_help = "Examples:\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label deploy-bot\n  \
        oauth-sidecar admin token create --config sidecar.yaml --label vault-sync \\\n      \
          --permission \"administer oauth\" --permission \"manage oauth client secrets\"\n  \
        oauth-sidecar admin token list --config sidecar.yaml")]
    Admin {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Store maintenance: apply migrations, or copy a SQLite store into PostgreSQL.
    #[command(after_help = "Examples:\n  \
        oauth-sidecar store migrate --config sidecar.yaml\n  \
        OAUTH_SIDECAR_COPY_TO=postgres://sidecar:secret@db/sidecar \\\n      \
          oauth-sidecar store copy --from sqlite://./data/sidecar.db")]
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Manage token-signing keys.
    Keys {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// OAuth providers the client role knows (presets and client.providers).
    Provider {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// OAuth client registrations at providers.
    Client {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Tokens from providers in the store.
    Token {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Print the table name | title.
    List,
    /// Print a provider's options (scopes included) as JSON.
    Show { name: String },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client: the provider's name and the credentials it issued.
    Create {
        /// A machine name for /oauth/start/NAME; default: the provider's name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        client_id: String,
        /// The client secret (or --secret-file; none for a public client).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The tenant (ms-exchange).
        #[arg(long)]
        tenant: Option<String>,
        /// A scope instead of the provider's defaults (repeat for more).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List clients: name, provider, client ID, source (config or cli), label.
    List,
    /// Delete a client made with the CLI, with its tokens.
    Delete { name: String },
    /// Print the Redirect URL to copy to the provider (warns when providers will refuse it).
    RedirectUrl,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// List tokens (no secrets): id, client, tag, grant, owner, expiry, status.
    List,
    /// Print a token in clear: raw response, and a JWT's header and claims (unverified).
    Inspect { id: i64 },
    /// Revoke a token at the provider (when it has an endpoint) and delete it.
    Delete { id: i64 },
    /// Refresh a token now.
    Refresh { id: i64 },
    /// Get a token with the client_credentials or password grant and store it.
    Fetch {
        #[arg(long)]
        client: String,
        #[arg(long, value_parser = ["client_credentials", "password"])]
        grant: String,
        /// The tag to store it under; default `default` (client_credentials) or the username.
        #[arg(long)]
        tag: Option<String>,
        /// A scope instead of the client's (repeat for more).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// For the password grant; the password is the first line of standard input or --password-file.
        #[arg(long)]
        username: Option<String>,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The YAML configuration file (it names the store and the server settings).
    #[arg(long, short, global = true, env = "OAUTH_SIDECAR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConsumerCommand {
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
struct ConsumerFields {
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

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is the first line of standard input or of --password-file.
    Add {
        username: String,
        /// A role of server.roles (repeat for more).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// May use the admin API and pages (with `administer oauth` unless --permission says).
        #[arg(long)]
        admin: bool,
        /// An admin permission: "administer oauth" or "manage oauth client secrets" (repeat for both).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// Read the password from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a user's password (first line of standard input or of --password-file).
    Passwd {
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Replace a user's roles.
    Roles { username: String, roles: Vec<String> },
    /// Replace a user's admin permissions (none: no longer an admin).
    Permissions { username: String, permissions: Vec<String> },
    /// Disable a user (no login, no token), or enable them again with --enable.
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
    },
    /// List users: username, roles, flags.
    List,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Tokens for `Authorization: Bearer` on the admin JSON API.
    Token {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
}

#[derive(Subcommand)]
enum AdminTokenCommand {
    /// Make a token: printed once with its id, stored only as its SHA-256 hash.
    Create {
        /// What the token is for (shown by `admin token list`).
        #[arg(long)]
        label: String,
        /// "administer oauth" (the default) or "manage oauth client secrets" (repeat for both).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// List tokens: id, label, permissions, created (Unix time); never a token or its hash.
    List,
    /// Delete a token by id: it stops working at once.
    Delete { id: String },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Apply the pending migrations to the configured store and print the versions applied
    /// (`serve` does this at start too; this is for a deploy step before replicas start).
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy a SQLite store into a new, empty PostgreSQL store (both migrated first), all or
    /// nothing; hashes, keys and encrypted tokens move unchanged, so everything keeps working.
    Copy {
        /// The SQLite store: sqlite://PATH.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL store: postgres://user:password@host/db (from the environment, so
        /// the password stays out of the process list).
        #[arg(long, env = "OAUTH_SIDECAR_COPY_TO", value_name = "URL", hide_env_values = true)]
        to: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a signing key (a running sidecar signs with it once it reloads its keys: at once on
    /// PostgreSQL, which announces the change, else within server.keys_reload_interval); prints its kid.
    Rotate {
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "RS256"])]
        alg: String,
    },
    /// List signing keys: kid, alg, created (Unix time), state.
    List,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Consumer { config, command } => {
            admin_command(config, false, |store, server| Box::pin(consumer(store, server, command)))
        }
        Command::User { config, command } => {
            admin_command(config, true, |store, server| Box::pin(user(store, server, command)))
        }
        Command::Admin { config, command: AdminCommand::Token { command } } => {
            admin_command(config, true, |store, _| Box::pin(admin_token(store, command)))
        }
        Command::Provider { config, command } => provider_command(config, command),
        Command::Client { config, command } => {
            if let ClientCommand::RedirectUrl = command {
                return redirect_url(config);
            }
            client_command(config, |tokens, _store| Box::pin(client(tokens, command)))
        }
        Command::Token { config, command } => {
            client_command(config, |tokens, store| Box::pin(token(tokens, store, command)))
        }
        Command::Keys { config, command } => {
            admin_command(config, false, |store, server| Box::pin(keys(store, server, command)))
        }
        Command::CheckConfig { file } => match load(&file) {
            Ok(loaded) => {
                println!("{}: ok\n{}", file.display(), loaded.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Store { command } => store_command(command),
        Command::Serve { config } => serve(config),
        Command::Healthcheck { config } => healthcheck(config),
    }
}

/// Loads the configuration, or prints every error and gives exit status 2.
fn load(file: &std::path::Path) -> Result<oauth_sidecar::config::Loaded, ExitCode> {
    oauth_sidecar::load_config(file).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn healthcheck(file: PathBuf) -> ExitCode {
    let loaded = match load(&file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let config = &loaded.config;
    // A wildcard listener is asked on loopback.
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let probe = oauth_sidecar::ops::probe(addr, &config.ops.health.0, config.tls.is_some());
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(probe),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(file: PathBuf) -> ExitCode {
    let loaded = match load(&file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(e) = oauth_sidecar::telemetry::init(&loaded.config.log) {
        eprintln!("oauth-sidecar: cannot set up logging: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Installed first, so SIGTERM during start-up still shuts down cleanly.
        let shutdown = oauth_sidecar::shutdown_signal();
        match oauth_sidecar::Sidecar::build(loaded).await {
            Ok(sidecar) => {
                sidecar.run(shutdown).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("cannot start: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

type Output = Result<Vec<String>, AdminError>;
type Server = oauth_sidecar::config::server::ServerConfig;
type Store = std::sync::Arc<dyn oauth_sidecar::store::Store>;

/// Loads the configuration, opens its store, runs `run` and prints its
/// lines; `server_optional`: the command needs no `server:` section.
fn admin_command(
    config: ConfigArg,
    server_optional: bool,
    run: impl FnOnce(Store, Server) -> std::pin::Pin<Box<dyn Future<Output = Output>>>,
) -> ExitCode {
    let Some(file) = config.config else {
        eprintln!("oauth-sidecar: give the configuration with --config FILE or OAUTH_SIDECAR_CONFIG");
        return ExitCode::from(EXIT_CONFIG);
    };
    let loaded = match load(&file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oauth-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (store, server) = match (&loaded.config.server, server_optional) {
            // Users (e.g. admins for /oauth/start) and admin tokens need no `server:` section.
            (None, true) => (
                oauth_sidecar::store::open_with(&loaded.store, loaded.store_options()).await?,
                Server::default(),
            ),
            _ => admin::open(&loaded).await?,
        };
        let out = run(store.clone(), server).await;
        store.close().await;
        out
    });
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oauth-sidecar: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn consumer(store: Store, server: Server, command: ConsumerCommand) -> Output {
    let store = store.as_ref();
    let created = |c: admin::CreatedConsumer| {
        let mut out = vec![format!("client_id: {}", c.consumer.client_id)];
        if let Some(secret) = c.secret {
            out.push(format!("client_secret: {}", secret.expose()));
            out.push("(the secret is shown only now; it is stored as a hash)".into());
        }
        out
    };
    match command {
        ConsumerCommand::Create { client_id, fields } => {
            Ok(created(admin::create_consumer(store, &server, client_id, &fields.spec()).await?))
        }
        ConsumerCommand::List => Ok(admin::list_consumers(store).await?.iter().map(|c| c.line()).collect()),
        ConsumerCommand::Show { client_id } => {
            Ok(vec![admin::show_consumer(store, &client_id).await?.to_string()])
        }
        ConsumerCommand::Update { client_id, fields, new_secret, confidential, third_party } => {
            let mut spec = fields.spec();
            if confidential {
                spec.public = Some(false);
            }
            if third_party {
                spec.third_party = Some(true);
            }
            Ok(created(admin::update_consumer(store, &server, &client_id, &spec, new_secret).await?))
        }
        ConsumerCommand::Delete { client_id } => {
            admin::delete_consumer(store, &client_id).await?;
            Ok(vec![format!("deleted consumer {client_id}")])
        }
    }
}

async fn user(store: Store, server: Server, command: UserCommand) -> Output {
    let store = store.as_ref();
    match command {
        UserCommand::Add { username, roles, admin, permissions, password_file } => {
            let password = admin::read_password(password_file.as_deref())?;
            admin::add_user(store, &server, &username, &password, roles, admin, permissions).await?;
            Ok(vec![format!("added user {username}")])
        }
        UserCommand::Passwd { username, password_file } => {
            let password = admin::read_password(password_file.as_deref())?;
            admin::change_user(
                store,
                &server,
                &username,
                UserChange { password: Some(password), ..Default::default() },
            )
            .await?;
            Ok(vec![format!("changed the password of {username}")])
        }
        UserCommand::Roles { username, roles } => {
            admin::change_user(
                store,
                &server,
                &username,
                UserChange { roles: Some(roles), ..Default::default() },
            )
            .await?;
            Ok(vec![])
        }
        UserCommand::Permissions { username, permissions } => {
            let change = UserChange { permissions: Some(permissions), ..Default::default() };
            admin::change_user(store, &server, &username, change).await?;
            Ok(vec![])
        }
        UserCommand::Disable { username, enable } => {
            admin::change_user(
                store,
                &server,
                &username,
                UserChange { disabled: Some(!enable), ..Default::default() },
            )
            .await?;
            Ok(vec![format!("{} user {username}", if enable { "enabled" } else { "disabled" })])
        }
        UserCommand::List => admin::list_users(store).await,
    }
}

async fn admin_token(store: Store, command: AdminTokenCommand) -> Output {
    use oauth_sidecar::admin as site;
    let store = store.as_ref();
    match command {
        AdminTokenCommand::Create { label, permissions } => {
            let made = site::create_token(store, &label, permissions).await?;
            Ok(vec![
                format!("id: {}", made.id),
                format!("token: {}", made.token.expose()),
                "(the token is shown only now; it is stored as a hash)".into(),
            ])
        }
        AdminTokenCommand::List => site::list_tokens(store).await,
        AdminTokenCommand::Delete { id } => {
            site::delete_token(store, &id).await?;
            Ok(vec![format!("deleted admin token {id}")])
        }
    }
}

async fn keys(store: Store, server: Server, command: KeysCommand) -> Output {
    match command {
        KeysCommand::Rotate { alg } => Ok(vec![admin::rotate_key(store.as_ref(), &alg).await?]),
        KeysCommand::List => admin::list_keys(store.as_ref(), &server).await,
    }
}

fn store_command(command: StoreCommand) -> ExitCode {
    use oauth_sidecar::config::StoreUrl;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oauth-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<String, String> = match command {
        StoreCommand::Migrate { config } => {
            let loaded = match loaded_from(config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            runtime.block_on(async {
                let store = oauth_sidecar::store::open_with(&loaded.store, loaded.store_options())
                    .await
                    .map_err(|e| e.to_string())?;
                let versions = store.applied_migrations().await.map_err(|e| e.to_string());
                store.close().await;
                let versions: Vec<String> = versions?.iter().map(i64::to_string).collect();
                Ok(format!("{}: migrations applied: {}", loaded.store, versions.join(", ")))
            })
        }
        StoreCommand::Copy { from, to } => {
            let from = match from.parse::<StoreUrl>() {
                Ok(StoreUrl::Sqlite(path)) => path,
                Ok(StoreUrl::Postgres(_)) | Err(_) => {
                    eprintln!("oauth-sidecar: --from must be sqlite://PATH");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let Ok(StoreUrl::Postgres(to)) = to.parse::<StoreUrl>() else {
                eprintln!("oauth-sidecar: --to must be postgres://user:password@host/db");
                return ExitCode::from(EXIT_CONFIG);
            };
            runtime.block_on(async {
                let report = oauth_sidecar::store::copy::sqlite_to_postgres(
                    &from,
                    to.expose(),
                    oauth_sidecar::store::PostgresOptions::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let mut out = format!(
                    "copied sqlite://{} to {}",
                    from.display(),
                    oauth_sidecar::store::redacted_url(to.expose())
                );
                for (table, rows) in report.tables {
                    out.push_str(&format!("\n  {table}: {rows}"));
                }
                Ok(out)
            })
        }
    };
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oauth-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

fn loaded_from(config: ConfigArg) -> Result<oauth_sidecar::config::Loaded, ExitCode> {
    let Some(file) = config.config else {
        eprintln!("oauth-sidecar: give the configuration with --config FILE or OAUTH_SIDECAR_CONFIG");
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    load(&file)
}

fn provider_command(config: ConfigArg, command: ProviderCommand) -> ExitCode {
    use oauth_sidecar::client::provider;
    // Without a file, the presets alone.
    let (custom, issuer) = match config.config {
        Some(_) => match loaded_from(config) {
            Ok(l) => (
                l.config.client.as_ref().map(|c| c.providers.clone()).unwrap_or_default(),
                l.public_url.base(),
            ),
            Err(code) => return code,
        },
        None => (Vec::new(), "http://localhost:8080".to_owned()),
    };
    let all = provider::all(&custom, &issuer);
    match command {
        ProviderCommand::List => {
            let width = all.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
            println!("{:width$} | title", "name");
            for p in &all {
                println!("{:width$} | {}", p.name, p.title);
            }
            ExitCode::SUCCESS
        }
        ProviderCommand::Show { name } => match all.iter().find(|p| p.name == name) {
            Some(p) => {
                println!("{}", serde_json::to_string_pretty(&p.options_json()).unwrap_or_default());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("oauth-sidecar: no provider `{name}`");
                ExitCode::FAILURE
            }
        },
    }
}

fn redirect_url(config: ConfigArg) -> ExitCode {
    let loaded = match loaded_from(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match oauth_sidecar::client::admin::redirect_url(&loaded) {
        Ok((url, warning)) => {
            println!("{url}");
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oauth-sidecar: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

type ClientOutput = Result<Vec<String>, oauth_sidecar::client::ClientError>;
type Tokens = std::sync::Arc<oauth_sidecar::client::Tokens>;

/// Loads the configuration, opens the store and the token store (checking
/// the token key), runs `run` and prints its lines.
fn client_command(
    config: ConfigArg,
    run: impl FnOnce(Tokens, Store) -> std::pin::Pin<Box<dyn Future<Output = ClientOutput>>>,
) -> ExitCode {
    let loaded = match loaded_from(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oauth-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<Vec<String>, (String, u8)> = runtime.block_on(async {
        let store = oauth_sidecar::store::open_with(&loaded.store, loaded.store_options())
            .await
            .map_err(|e| (e.to_string(), 1))?;
        let tokens = match oauth_sidecar::client::open_tokens(&loaded, store.clone()).await {
            Ok(t) => t,
            Err(e) => {
                store.close().await;
                return Err((e.to_string(), EXIT_CONFIG));
            }
        };
        let out = run(tokens, store.clone()).await;
        store.close().await;
        out.map_err(|e| (e.to_string(), e.exit_code()))
    });
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err((e, code)) => {
            eprintln!("oauth-sidecar: {e}");
            ExitCode::from(code)
        }
    }
}

async fn client(tokens: Tokens, command: ClientCommand) -> ClientOutput {
    use oauth_sidecar::client::ClientError;
    match command {
        ClientCommand::Create { name, provider, client_id, secret, secret_file, tenant, scopes, label } => {
            let secret = match (secret, secret_file) {
                (Some(s), _) => Some(oauth_sidecar::config::Secret::new(s)),
                (None, Some(f)) => Some(
                    oauth_sidecar::config::read_secret_file(&f)
                        .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", f.display())))?,
                ),
                (None, None) => None,
            };
            let name = name.unwrap_or_else(|| provider.clone());
            let scopes = (!scopes.is_empty()).then_some(scopes);
            tokens
                .registry()
                .create(&name, &provider, &client_id, secret.as_ref(), tenant, scopes, label)
                .await?;
            Ok(vec![format!("created client {name} (provider {provider}); start it at /oauth/start/{name}")])
        }
        ClientCommand::List => oauth_sidecar::client::admin::client_list(&tokens).await,
        ClientCommand::Delete { name } => {
            tokens.registry().delete(&name).await?;
            Ok(vec![format!("deleted client {name}")])
        }
        ClientCommand::RedirectUrl => Ok(vec![]),
    }
}

async fn token(tokens: Tokens, store: Store, command: TokenCommand) -> ClientOutput {
    use oauth_sidecar::client::ClientError;
    use oauth_sidecar::client::admin as ca;
    match command {
        TokenCommand::List => ca::token_list(&tokens, store.as_ref()).await,
        TokenCommand::Inspect { id } => ca::token_inspect(&tokens, store.as_ref(), id).await,
        TokenCommand::Delete { id } => ca::token_delete(&tokens, store.as_ref(), id).await,
        TokenCommand::Refresh { id } => ca::token_refresh(&tokens, store.as_ref(), id).await,
        TokenCommand::Fetch { client, grant, tag, scopes, username, password_file } => {
            let grant = if grant == "password" {
                let username = username
                    .ok_or_else(|| ClientError::Usage("the password grant needs --username".into()))?;
                let password = admin::read_password(password_file.as_deref())
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                ca::FetchGrant::Password { username, password }
            } else {
                ca::FetchGrant::ClientCredentials
            };
            ca::token_fetch(&tokens, &client, grant, tag, (!scopes.is_empty()).then_some(scopes)).await
        }
    }
}
