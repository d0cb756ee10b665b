//! `oauth-sidecar check-config`, black box: the built binary on files written
//! to a temporary folder. A good file prints `FILE: ok` and a summary; a bad
//! one prints every problem as `file:line:column: field.path: message` on
//! stderr and exits with status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The name the files are written under, and so the name errors start with.
const FILE: &str = "sidecar.yaml";

/// A command for the binary with the environment variables these tests
/// depend on removed, run from `dir`.
fn sidecar(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"));
    cmd.current_dir(dir).env_remove("OAUTH_SIDECAR_CONFIG").env_remove("NOT_SET_VAR");
    cmd
}

/// Writes `yaml` as `sidecar.yaml` in a fresh folder and checks it.
fn check(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), yaml).unwrap();
    sidecar(dir.path()).args(["check-config", FILE]).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `out` refused the file with status 2 and has the error line
/// `sidecar.yaml:AT: PATH: ...FRAGMENT...` on stderr, `at` being `LINE:COLUMN`.
#[track_caller]
fn assert_error(out: &Output, at: &str, path: &str, fragment: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr:\n{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad file, got:\n{}", stdout(out));
    let prefix = if path.is_empty() { format!("{FILE}:{at}: ") } else { format!("{FILE}:{at}: {path}: ") };
    let found = err.lines().any(|l| l.starts_with(&prefix) && l[prefix.len()..].contains(fragment));
    assert!(found, "expected a line `{prefix}...{fragment}...` in stderr:\n{err}");
}

/// The last line of a refusal that stopped parsing a section.
const MORE_MAY_FOLLOW: &str = "sidecar.yaml: more problems may follow";

/// Asserts exactly one error line, as [`assert_error`] (after a parse error,
/// the note that reading stopped there may follow it).
#[track_caller]
fn assert_only_error(yaml: &str, at: &str, path: &str, fragment: &str) {
    let out = check(yaml);
    assert_error(&out, at, path, fragment);
    let err = stderr(&out);
    let problems = err.lines().filter(|l| !l.starts_with(MORE_MAY_FOLLOW)).count();
    assert_eq!(problems, 1, "one error line:\n{err}");
}

// --- good files --------------------------------------------------------------

#[test]
fn valid_file_passes_and_prints_a_summary() {
    let out = check(
        "listen: 127.0.0.1:9000\n\
         public_url: https://app.example.com\n\
         upstream: http://127.0.0.1:8000\n\
         store: sqlite://./state/sidecar.db\n\
         log: { level: debug, format: json, access: false }\n\
         proxy:\n  \
           preserve_host: false\n  \
           trusted_proxies: [10.0.0.0/8, 127.0.0.1]\n  \
           connect_timeout: 2s\n  \
           timeout: 30s\n  \
           max_body_size: 10MiB\n\
         ops: { health: /livez }\n\
         shutdown_grace: 10s\n",
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.starts_with(&format!("{FILE}: ok\n")), "{summary}");
    for expected in [
        "listen:     http://127.0.0.1:9000",
        "public URL: https://app.example.com/",
        "upstream:   http://127.0.0.1:8000/",
        "store:      sqlite://./state/sidecar.db",
        "host rewritten, 2 trusted proxies, connect timeout 2s, timeout 30s",
        "bodies up to 10MiB",
        "operations: /livez /readyz /metrics",
        "log:        debug as json",
        "shutdown:   drain for up to 10s",
    ] {
        assert!(summary.contains(expected), "summary lacks `{expected}`:\n{summary}");
    }
}

#[test]
fn empty_file_passes_with_every_default() {
    let out = check("");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("listen:     http://0.0.0.0:8080"), "{summary}");
    assert!(summary.contains("upstream:   demo"), "{summary}");
    assert!(summary.contains("store:      sqlite://./data/sidecar.db"), "{summary}");
}

#[test]
fn every_file_in_the_config_folder_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = match std::fs::read_dir(root.join("config")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() {
        eprintln!("config/ holds no YAML file yet: nothing to check");
    }
    for file in files {
        let out = sidecar(root).arg("check-config").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{} failed:\n{}", file.display(), stderr(&out));
        assert!(stdout(&out).starts_with(&format!("{}: ok\n", file.display())), "{}", stdout(&out));
    }
}

#[test]
fn env_vars_are_interpolated_and_defaults_apply_when_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(FILE),
        "upstream: ${CHECK_CONFIG_TEST_UPSTREAM}\npublic_url: ${NOT_SET_VAR:-https://fallback.example}\n",
    )
    .unwrap();
    let out = sidecar(dir.path())
        .args(["check-config", FILE])
        .env("CHECK_CONFIG_TEST_UPSTREAM", "http://127.0.0.1:8123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("upstream:   http://127.0.0.1:8123/"), "{summary}");
    assert!(summary.contains("public URL: https://fallback.example/"), "{summary}");
}

#[test]
fn config_env_var_is_the_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-env.yaml");
    std::fs::write(&file, "listen: 127.0.0.1:9123\n").unwrap();
    let out = sidecar(dir.path()).arg("check-config").env("OAUTH_SIDECAR_CONFIG", &file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.starts_with(&format!("{}: ok\n", file.display())), "{summary}");
    assert!(summary.contains("listen:     http://127.0.0.1:9123"), "{summary}");
}

// --- bad files: parse errors, one per file -------------------------------------

#[test]
fn parse_errors_in_several_sections_are_all_reported_in_one_run() {
    let yaml = "---\n# three sections, each with one mistake\nlisten: nowhere\nproxy:\n  timeout: soon\n  preserve_host: true\nupstream: http://127.0.0.1:9000\nadmin:\n  idle_timeout: 30\n  enabledd: true\n";
    let out = check(yaml);
    assert_error(&out, "3:9", "listen", "");
    assert_error(&out, "5:12", "proxy.timeout", "`soon` is not a duration");
    assert_error(&out, "9:17", "admin.idle_timeout", "");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "three problems in file order, then the note:\n{err}");
    assert!(lines[0].starts_with("sidecar.yaml:3:") && lines[2].starts_with("sidecar.yaml:9:"), "{err}");
    assert!(lines[3].starts_with(MORE_MAY_FOLLOW), "{err}");
}

#[test]
fn unknown_field_names_file_line_and_column() {
    assert_only_error(
        "listen: 127.0.0.1:9000\nlisten_port: 8080\n",
        "2:1",
        "listen_port",
        "unknown field `listen_port`, expected one of listen, public_url",
    );
}

#[test]
fn unknown_nested_field_names_its_dotted_path() {
    assert_only_error(
        "proxy:\n  preserve_host: true\n  timeoutt: 30s\n",
        "3:3",
        "proxy.timeoutt",
        "unknown field `timeoutt`, expected one of preserve_host, trusted_proxies, connect_timeout, timeout",
    );
}

#[test]
fn wrong_type_says_what_was_expected() {
    assert_only_error(
        "proxy:\n  pool_max_idle: many\n",
        "2:18",
        "proxy.pool_max_idle",
        "expected a whole number",
    );
    assert_only_error(
        "proxy:\n  preserve_host: maybe\n",
        "2:18",
        "proxy.preserve_host",
        "expected `true` or `false`",
    );
}

#[test]
fn section_given_a_value_expects_a_mapping() {
    assert_only_error("proxy: 5\n", "1:8", "proxy", "expected a mapping");
}

#[test]
fn bad_listen_address_shows_the_expected_form() {
    assert_only_error(
        "upstream: demo\nlisten: localhost\n",
        "2:9",
        "listen",
        "`localhost` is not a listen address: write IP:PORT, e.g. `0.0.0.0:8080`",
    );
}

#[test]
fn public_url_must_be_http_or_https() {
    assert_only_error(
        "public_url: ftp://x\n",
        "1:13",
        "public_url",
        "`ftp://x` has scheme `ftp`: expected http or https",
    );
}

#[test]
fn public_url_must_be_a_url() {
    assert_only_error("public_url: not a url\n", "1:13", "public_url", "`not a url` is not a URL");
}

#[test]
fn upstream_with_a_path_is_refused() {
    assert_only_error(
        "upstream: http://127.0.0.1:8000/app\n",
        "1:11",
        "upstream",
        "the upstream is an origin only (http://host:port), without a path",
    );
}

#[test]
fn duration_without_unit_is_refused() {
    assert_only_error(
        "proxy:\n  timeout: 30\n",
        "2:12",
        "proxy.timeout",
        "`30` has no unit: write a duration like `30s`",
    );
}

#[test]
fn duration_that_is_not_a_duration_is_refused() {
    assert_only_error("proxy:\n  timeout: soon\n", "2:12", "proxy.timeout", "`soon` is not a duration");
}

#[test]
fn bad_byte_size_is_refused() {
    assert_only_error(
        "proxy:\n  max_body_size: 10 parsecs\n",
        "2:18",
        "proxy.max_body_size",
        "`10 parsecs` is not a size: write a number of bytes or e.g. `64KiB`",
    );
}

#[test]
fn missing_env_var_names_the_variable_and_the_field() {
    let not_set =
        "environment variable `NOT_SET_VAR` is not set (write `${NOT_SET_VAR:-default}` for a default)";
    assert_only_error("public_url: ${NOT_SET_VAR}\n", "1:13", "public_url", not_set);
    assert_only_error("proxy:\n  timeout: ${NOT_SET_VAR}\n", "2:12", "proxy.timeout", not_set);
}

#[test]
fn bad_trusted_proxy_names_its_index_in_the_list() {
    assert_only_error(
        "proxy:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - localhost\n",
        "4:7",
        "proxy.trusted_proxies[1]",
        "`localhost` is not an IP address or network",
    );
}

#[test]
fn unclosed_bracket_is_a_syntax_error_at_the_bracket() {
    assert_only_error(
        "proxy:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1\n",
        "2:20",
        "proxy.trusted_proxies",
        "unclosed bracket '['",
    );
}

#[test]
fn duplicate_key_is_refused() {
    assert_only_error(
        "listen: 127.0.0.1:9000\nlisten: 127.0.0.1:9001\n",
        "2:1",
        "",
        "duplicate mapping key `listen`",
    );
}

#[test]
fn missing_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = sidecar(dir.path()).args(["check-config", "absent.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("absent.yaml: cannot read the configuration file: "),
        "{}",
        stderr(&out)
    );
}

// --- bad files: validation errors, all reported ---------------------------------

#[test]
fn missing_store_file_secret_is_reported() {
    assert_only_error(
        "store_file: /nonexistent/store-url\n",
        "1:13",
        "store_file",
        "cannot read secret file /nonexistent/store-url",
    );
}

#[test]
fn missing_tls_files_are_both_reported() {
    let out = check("tls:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n");
    assert_error(&out, "2:14", "tls.cert_file", "cannot read /nonexistent/cert.pem");
    assert_error(&out, "3:13", "tls.key_file", "cannot read /nonexistent/key.pem");
}

#[test]
fn connect_timeout_longer_than_timeout_is_contradictory() {
    assert_only_error(
        "proxy:\n  connect_timeout: 90s\n  timeout: 30s\n",
        "2:20",
        "proxy.connect_timeout",
        "proxy.connect_timeout (1m 30s) is longer than proxy.timeout (30s): contradictory settings",
    );
    // With connect_timeout left at its default (5s), the error points at timeout.
    assert_only_error(
        "proxy:\n  timeout: 1s\n",
        "2:12",
        "proxy.timeout",
        "is longer than proxy.timeout (1s)",
    );
}

#[test]
fn duplicate_ops_paths_are_refused() {
    assert_only_error(
        "ops:\n  health: /status\n  ready: /status\n",
        "3:10",
        "ops.ready",
        "`/status` is already the path of ops.health",
    );
    // Taking a default path points at the line that was written.
    assert_only_error(
        "ops:\n  health: /metrics\n",
        "2:11",
        "ops.health",
        "`/metrics` is already the path of ops.metrics",
    );
}

#[test]
fn bad_log_level_is_refused() {
    assert_only_error("log:\n  level: \"loud[[\"\n", "2:10", "log.level", "`loud[[` is not a log filter");
}

#[test]
fn every_validation_problem_is_reported() {
    let out = check(
        "log:\n  level: \"=[\"\n\
         proxy:\n  connect_timeout: 2m\n  timeout: 1m\n\
         ops:\n  health: /x\n  metrics: /x\n",
    );
    assert_error(&out, "2:10", "log.level", "is not a log filter");
    assert_error(&out, "4:20", "proxy.connect_timeout", "contradictory settings");
    assert_error(&out, "8:12", "ops.metrics", "`/x` is already the path of ops.health");
    assert_eq!(stderr(&out).lines().count(), 3, "three error lines:\n{}", stderr(&out));
}

// --- the server section --------------------------------------------------------

#[test]
fn server_consumer_problems_are_each_reported_at_their_line() {
    let out = check(
        "server:
  roles:
    farm_viewer: { label: Viewer, description: Read records }
  consumers:
    - client_id: reporting
      scopes: [farm_viewer, farm_owner]
      grant_types: [client_credentials]
    - client_id: public_app
      confidential: false
      grant_types: [client_credentials, implicit]
    - client_id: filed
      secret_file: /nonexistent/reporting-secret
      redirect_uris: ['https://app.example/cb#frag']
",
    );
    assert_error(
        &out,
        "5:18",
        "server.consumers[0].secret",
        "a confidential consumer needs `secret` or `secret_file`",
    );
    assert_error(
        &out,
        "6:29",
        "server.consumers[0].scopes",
        "`farm_owner` is not a role declared in server.roles",
    );
    assert_error(&out, "10:21", "server.consumers[1].grant_types", "may not use client_credentials");
    assert_error(&out, "10:41", "server.consumers[1].grant_types", "`implicit` is not a grant type");
    assert_error(
        &out,
        "12:20",
        "server.consumers[2].secret_file",
        "cannot read /nonexistent/reporting-secret",
    );
    assert_error(&out, "13:23", "server.consumers[2].redirect_uris", "has a fragment");
    assert_eq!(stderr(&out).lines().count(), 6, "six error lines:\n{}", stderr(&out));
}

#[test]
fn server_secret_files_are_read_and_users_need_exactly_one_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "a-long-enough-client-secret\n").unwrap();
    std::fs::write(
        dir.path().join(FILE),
        "server:
  consumers:
    - client_id: reporting
      secret_file: secret
      user_id: reporter
      grant_types: [client_credentials]
  users:
    - username: admin
      password: pw
      password_file: secret
    - username: nobody
",
    )
    .unwrap();
    let out = sidecar(dir.path()).args(["check-config", FILE]).output().unwrap();
    assert_error(
        &out,
        "10:22",
        "server.users[0].password_file",
        "give either `password` or `password_file`, not both",
    );
    assert_error(&out, "11:17", "server.users[1].password", "needs `password` or `password_file`");
    assert_eq!(stderr(&out).lines().count(), 2, "the consumer's secret file was read:\n{}", stderr(&out));
}

#[test]
fn client_credentials_without_user_id_is_a_warning_not_an_error() {
    let out = check(
        "server:
  consumers:
    - client_id: reporting
      secret: a-long-enough-client-secret
      grant_types: [client_credentials]
",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("client_credentials without `user_id`"), "{}", stdout(&out));
}

#[test]
fn refresh_reuse_grace_longer_than_five_minutes_is_refused() {
    assert_only_error(
        "server:\n  refresh_reuse_grace: 6m\n",
        "2:24",
        "server.refresh_reuse_grace",
        "at most 5 minutes",
    );
    let out = check("server:\n  refresh_reuse_grace: 5m\n  keys_reload_interval: 0s\n");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_admin_pages_need_a_path_of_their_own_and_users_known_permissions() {
    let out = check(
        "upstream: http://127.0.0.1:9\nadmin:\n  path: /oauth/admin\nserver:\n  users:\n    - username: root\n      password: root-password\n      permissions: [administer everything]\n",
    );
    assert_error(&out, "3:9", "admin.path", "the admin pages need their own path");
    assert_error(
        &out,
        "8:21",
        "server.users[0].permissions",
        "`administer everything` is not an admin permission",
    );
    assert!(check("upstream: http://127.0.0.1:9\nadmin:\n  path: /manage/\n").status.success());
}

#[test]
fn the_file_may_be_given_with_config_like_every_other_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), "upstream: demo\n").unwrap();
    let out = sidecar(dir.path()).args(["check-config", "--config", FILE]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("{FILE}: ok")), "{}", stdout(&out));

    std::fs::write(dir.path().join(FILE), "listen: nowhere\n").unwrap();
    let out = sidecar(dir.path()).args(["check-config", "-c", FILE]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("{FILE}:1:9: listen: ")), "{}", stderr(&out));

    let out = sidecar(dir.path()).args(["check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no file at all is a usage error");
    assert!(stderr(&out).contains("--config FILE"), "{}", stderr(&out));
}

#[test]
fn consumer_logout_uris_are_checked_at_their_line() {
    let out = check(
        "server:
  consumers:
    - client_id: web
      confidential: false
      redirect_uris: ['https://app.example/cb']
      post_logout_redirect_uris: ['https://app.example/bye', 'https://app.example/out#frag']
      backchannel_logout_uri: ftp://app.example/logout
",
    );
    assert_error(&out, "6:62", "server.consumers[0].post_logout_redirect_uris", "has a fragment");
    assert_error(
        &out,
        "7:31",
        "server.consumers[0].backchannel_logout_uri",
        "not an absolute http or https URL",
    );
    assert_eq!(stderr(&out).lines().count(), 2, "two error lines:\n{}", stderr(&out));
}

#[test]
fn a_reader_that_stops_early_gets_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), "upstream: http://127.0.0.1:8000\n").unwrap();
    // The reader's end of the pipe is closed before the summary is written.
    let mut child = sidecar(dir.path())
        .args(["check-config", FILE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn a_login_without_password_form_or_providers_is_refused_at_its_line() {
    let out = check(
        "upstream: http://127.0.0.1:8000\nserver:\n  roles:\n    viewer: { label: Viewer }\n  login:\n    password: false\n",
    );
    assert_error(&out, "6:15", "server.login.password", "no way to sign in");
}
