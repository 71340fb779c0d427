//! The command line: `check-config` lists every problem and exits 1, `hash-password` makes a
//! hash local users can log in with, `keys rotate` keeps the old key published.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mcp-authd"));
    c.env_remove("MCP_AUTHD_CONFIG").env("RUST_LOG", "warn");
    c
}

#[test]
fn check_config_reports_every_problem_with_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nissuer = \"http://auth.example.com\"\nbind = \"nowhere\"\n[tokens]\ncode_ttl = 0\n[[local.users]]\nusername = \"bob\"\npassword_hash = \"plaintext\"\n").unwrap();
    let out =
        bin().arg("--config").arg(&file).arg("check-config").env("MCP_AUTHD__STORE__TYPE", "redis").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "5 problem(s)",
        "server.bind (MCP_AUTHD__SERVER__BIND)",
        "server.issuer (MCP_AUTHD__SERVER__ISSUER): must use https",
        "store.redis_url (MCP_AUTHD__STORE__REDIS_URL)",
        "tokens.code_ttl (MCP_AUTHD__TOKENS__CODE_TTL)",
        "local.users[0].password_hash",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Unknown keys are typos, not silently ignored.
    std::fs::write(&file, "[server]\nisuer = \"x\"\n").unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("isuer"));
    // The defaults are valid.
    let out = bin().current_dir(dir.path()).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_warns_of_a_loopback_issuer_on_a_public_bind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("public.toml");
    let data = dir.path().join("data");
    std::fs::write(&file, format!("[server]\nbind = \"0.0.0.0:8080\"\ndata_dir = \"{}\"\n", data.display())).unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "a warning, not an error: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "warning: server.issuer \"http://localhost:8080\" is a loopback URL but the server listens on 0.0.0.0:8080"
        ),
        "{text}"
    );
    let out = bin()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .env("MCP_AUTHD__SERVER__ISSUER", "https://auth.example.com")
        .output()
        .unwrap();
    assert!(!String::from_utf8(out.stdout).unwrap().contains("loopback URL"));
}

#[test]
fn check_config_reports_bad_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(&file, "[rate_limit]\nregister = \"30/day\"\ntoken = \"many\"\nverify = \"off\"\n").unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "2 problem(s)",
        "rate_limit.register (MCP_AUTHD__RATE_LIMIT__REGISTER): \"day\" is not a unit",
        "rate_limit.token (MCP_AUTHD__RATE_LIMIT__TOKEN): \"many\" is not <count>/<s|min|h>",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn check_config_reads_the_files_serve_would_need() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let file = dir.path().join("c.toml");
    // validate() has seen that the files exist; check-config also reads them.
    let config = |data_dir: &std::path::Path| {
        format!(
            "[server]\ndata_dir = \"{}\"\n[tokens]\nprivate_key_file = \"{}\"\n",
            data_dir.display(),
            not_a_key.display()
        )
    };
    // A data directory under a file cannot be made.
    std::fs::write(&file, config(&not_a_key.join("data"))).unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tokens.private_key_file (MCP_AUTHD__TOKENS__PRIVATE_KEY_FILE)"), "{err}");
    assert!(err.contains("is not a PEM private key"), "{err}");
    assert!(
        err.contains("server.data_dir (MCP_AUTHD__SERVER__DATA_DIR)") && err.contains("is not a directory"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");

    // A real key and a writable directory: valid.
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&key)
        .output()
        .expect("openssl (make test-deps installs it)");
    assert!(made.status.success());
    std::fs::write(
        &file,
        format!(
            "[server]\ndata_dir = \"{}\"\n[tokens]\nprivate_key_file = \"{}\"\n",
            dir.path().join("d").display(),
            key.display()
        ),
    )
    .unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn hash_password_output_verifies() {
    let mut child =
        bin().arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    use argon2::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(&hash).unwrap();
    assert!(argon2::Argon2::default().verify_password(b"s3cret pass", &parsed).is_ok());
    assert!(argon2::Argon2::default().verify_password(b"s3cret pass\n", &parsed).is_err());
}

#[test]
fn keys_rotate_keeps_the_previous_key_published() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = bin().current_dir(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first: serde_json::Value = serde_json::from_str(&run(&["keys", "show"])).unwrap();
    assert_eq!(first["keys"].as_array().unwrap().len(), 1);
    let rotated = run(&["keys", "rotate"]);
    let second: serde_json::Value = serde_json::from_str(&run(&["keys", "show"])).unwrap();
    let kids: Vec<&str> = second["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2);
    assert!(rotated.contains(kids[0]), "the new key is current");
    assert_eq!(kids[1], first["keys"][0]["kid"].as_str().unwrap(), "the old key is still published");
}

#[test]
fn check_config_validates_oidc_providers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oidc.toml");
    let missing_secret = dir.path().join("no-such-secret");
    std::fs::write(
        &file,
        format!(
            "[oauth]\ndefault_provider = \"okta\"\n\n\
             [[oidc]]\nid = \"corp\"\nissuer = \"https://login.example.com/realms/main\"\nclient_id = \"mcp\"\n\n\
             [[oidc]]\nid = \"corp\"\nissuer = \"http://idp.example.com\"\nscopes = [\"profile\"]\n\
             client_secret_file = \"{}\"\n\n\
             [[oidc]]\nid = \"Bad Id\"\nissuer = \"accounts.google.com\"\nclient_id = \"x\"\ngroup_claim = \"groups\"\n",
            missing_secret.display()
        ),
    )
    .unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    // A misspelt key is refused first, by name.
    assert!(err.contains("group_claim"), "{err}");
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("group_claim = \"groups\"\n", "")).unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    // The secret file is read before validation: that problem comes alone.
    assert!(err.contains("oidc[1].client_secret_file: cannot read"), "{err}");
    std::fs::write(&missing_secret, "s3cret\n").unwrap();
    let out = bin().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "7 problem(s)",
        "oidc[1].id: \"corp\" is used by another [[oidc]] entry",
        "oidc[1].issuer: must be an https URL (http only on loopback)",
        "oidc[1].client_id: required",
        "oidc[1].scopes: must include \"openid\"",
        "oidc[2].id: 1 to 32 lower-case letters",
        "oidc[2].issuer: \"accounts.google.com\" is not a URL (e.g. https://accounts.google.com)",
        "oauth.default_provider (MCP_AUTHD__OAUTH__DEFAULT_PROVIDER): \"okta\" is not a configured redirect provider",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}
