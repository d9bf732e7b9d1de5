//! The `liangma` binary as an operator and a counter use it: keygen, trust, issue, verify.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use liangma::testkit::MEMBER_JSON;

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let workspace = Self { dir: tempfile::tempdir().unwrap() };
        std::fs::write(workspace.path("member.json"), MEMBER_JSON).unwrap();
        workspace
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// Starts `liangma ARGS` in the workspace with no inherited environment and piped stdio.
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_liangma"))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self.spawn(args);
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// keygen for Jiaozuo and publish the key from `from`; returns the key file name.
    fn jiaozuo_key(&self, from: &str) -> String {
        let out = self.ok(&["keygen", "--centre", "410800", "--out-dir", "keys"]);
        let key_id = out.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        let key = format!("keys/410800-{key_id}.pem");
        if Path::new(&self.path("trust.json")).exists() {
            return key;
        }
        self.ok(&[
            "trust",
            "add",
            "--trust",
            "trust.json",
            "--centre",
            "410800",
            "--name",
            "焦作",
            "--key",
            &key,
            "--valid-from",
            from,
        ]);
        key
    }

    fn issue(&self, key: &str, at: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "issue",
            "--trust",
            "trust.json",
            "--key",
            key,
            "--subject-secret",
            "keys/410800-subject.key",
            "--record",
            "member.json",
            "--at",
            at,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn verify(&self, at: &str, extra: &[&str]) -> Output {
        let mut args = vec!["verify", "--trust", "trust.json", "--centre", "440300", "--at", at];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

const MORNING: &str = "2026-11-26T09:30:00+08:00";
const LATER: &str = "2026-11-26T10:00:00+08:00";

#[test]
fn a_qr_image_written_by_issue_is_read_back_as_valid() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let issued = ws.issue(&key, MORNING, &["--png", "code.png", "--svg", "code.svg", "--qr"]);
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let text = stdout(&issued).lines().next().unwrap().to_string();
    assert!(text.starts_with("LM1:"));
    assert!(String::from_utf8_lossy(&issued.stderr).contains("QR version 8"));
    assert!(std::fs::read_to_string(ws.path("code.svg")).unwrap().starts_with("<?xml"));

    let verified = ws.verify(LATER, &["--image", "code.png"]);
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(stdout(&verified).starts_with("VALID issuer=410800"), "{}", stdout(&verified));
    assert!(stdout(&verified).contains("balance=20000.00"));

    let expired = ws.verify("2026-11-27T00:00:00+08:00", &[&text]);
    assert_eq!(expired.status.code(), Some(1));
    assert!(stdout(&expired).starts_with("EXPIRED "));
}

#[test]
fn scanner_lines_on_stdin_get_one_verdict_each() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let code = stdout(&ws.issue(&key, MORNING, &[])).trim_end().to_string();
    let long_line = "A".repeat(10_000);
    let input = format!("{code}\r\n\n{}\nLM2:ABC\n{long_line}\n{code}", code.to_lowercase());
    let output = ws.run_with_stdin(
        &["verify", "--trust", "trust.json", "--centre", "440300", "--at", LATER, "--json"],
        Some(&input),
    );
    assert_eq!(output.status.code(), Some(1));
    let verdicts: Vec<serde_json::Value> =
        stdout(&output).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let names: Vec<&str> = verdicts.iter().map(|v| v["verdict"].as_str().unwrap()).collect();
    assert_eq!(names, ["VALID", "MALFORMED", "UNSUPPORTED_VERSION", "MALFORMED", "VALID"]);
    assert_eq!(verdicts[0]["source"], "stdin line 1");
    assert_eq!(verdicts[3]["source"], "stdin line 5");
    assert_eq!(verdicts[0]["claims"]["deposit"]["balance_fen"], 2_000_000);
}

#[test]
fn output_never_shows_the_id_number_or_the_whole_subject_reference() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let issued = ws.issue(&key, MORNING, &["--qr"]);
    let code = stdout(&issued).lines().next().unwrap().to_string();
    let secret_hex = std::fs::read_to_string(ws.path("keys/410800-subject.key")).unwrap();
    let secret = liangma::trust::SubjectSecret::from_bytes(hex::decode(secret_hex.trim()).unwrap().try_into().unwrap());
    let full_subject = secret.subject_ref(&liangma::testkit::id_number()).to_full_hex();
    let text = ws.verify(LATER, &[&code]);
    let json = ws.verify(LATER, &["--json", &code]);
    for output in [&issued, &text, &json] {
        let all = format!("{}{}", stdout(output), String::from_utf8_lossy(&output.stderr));
        assert!(!all.contains("11010519491231002X"), "{all}");
        assert!(!all.contains(&full_subject), "{all}");
        assert!(!all.contains(&full_subject[..12]), "{all}");
        assert!(!all.contains(secret_hex.trim()), "{all}");
    }
    assert!(stdout(&text).contains(&format!("subject={}…", &full_subject[..6])));
}

#[test]
fn the_record_can_come_from_stdin() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let args = [
        "issue",
        "--trust",
        "trust.json",
        "--key",
        &key,
        "--subject-secret",
        "keys/410800-subject.key",
        "--record",
        "-",
        "--at",
        MORNING,
    ];
    let issued = ws.run_with_stdin(&args, Some(MEMBER_JSON));
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let code = stdout(&issued).trim_end().to_string();
    assert_eq!(ws.verify(LATER, &[&code]).status.code(), Some(0));
    let not_json = ws.run_with_stdin(&args, Some("balance: 1"));
    assert_eq!(not_json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("is not a deposit record"));
}

#[test]
fn keygen_writes_an_owner_only_key_and_never_prints_it() {
    let ws = Workspace::new();
    let out = ws.ok(&["keygen", "--centre", "410800", "--out-dir", "keys"]);
    // The key file is one a centre's security team reads with OpenSSL.
    let key_id = out.lines().next().unwrap().rsplit(' ').next().unwrap();
    let openssl = Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(ws.path(&format!("keys/410800-{key_id}.pem")))
        .output()
        .expect("openssl must be installed (scripts/test installs it)");
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    assert!(String::from_utf8_lossy(&openssl.stdout).contains("ED25519 Private-Key"));
    assert!(!out.contains("PRIVATE KEY"));
    let pem_name = std::fs::read_dir(ws.path("keys"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "pem"))
        .unwrap();
    let pem = std::fs::read_to_string(&pem_name).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    assert!(!out.contains(&body));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [&pem_name, &ws.path("keys/410800-subject.key")] {
            assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
    // A second key keeps the centre's subject secret, so member references survive rotation.
    let before = std::fs::read(ws.path("keys/410800-subject.key")).unwrap();
    let again = ws.ok(&["keygen", "--centre", "410800", "--out-dir", "keys"]);
    assert!(again.contains("kept"));
    assert_eq!(std::fs::read(ws.path("keys/410800-subject.key")).unwrap(), before);
}

#[test]
fn rotation_keeps_old_codes_valid_and_revocation_kills_them() {
    let ws = Workspace::new();
    let old_key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let old_code = stdout(&ws.issue(&old_key, MORNING, &[])).trim_end().to_string();

    let new_key = ws.jiaozuo_key("unused");
    ws.ok(&["trust", "rotate", "--trust", "trust.json", "--centre", "410800", "--key", &new_key, "--at", LATER]);

    // The old key no longer signs, but what it signed before still verifies.
    let refused = ws.issue(&old_key, "2026-11-26T10:30:00+08:00", &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("signs only from"));
    assert_eq!(ws.verify("2026-11-26T11:00:00+08:00", &[&old_code]).status.code(), Some(0));
    let new_code = stdout(&ws.issue(&new_key, "2026-11-26T10:30:00+08:00", &[])).trim_end().to_string();
    assert_eq!(ws.verify("2026-11-26T11:00:00+08:00", &[&new_code]).status.code(), Some(0));

    let old_id = old_key.trim_start_matches("keys/410800-").trim_end_matches(".pem");
    ws.ok(&["trust", "revoke", "--trust", "trust.json", "--centre", "410800", "--key-id", old_id]);
    let revoked = ws.verify("2026-11-26T11:00:00+08:00", &[&old_code, &new_code]);
    assert_eq!(revoked.status.code(), Some(1));
    let lines: Vec<String> = stdout(&revoked).lines().map(str::to_owned).collect();
    assert!(lines[0].starts_with("KEY_REVOKED"), "{lines:?}");
    assert!(lines[1].starts_with("VALID"), "{lines:?}");
    let shown = ws.ok(&["trust", "show", "--trust", "trust.json"]);
    assert!(shown.contains("revoked"), "{shown}");
}

#[test]
fn bad_input_is_an_error_with_status_2_and_no_echo_of_the_record() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    std::fs::write(ws.path("member.json"), MEMBER_JSON.replace("11010519491231002X", "110105194912310021")).unwrap();
    let bad_record = ws.issue(&key, MORNING, &[]);
    assert_eq!(bad_record.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_record.stderr);
    assert!(stderr.contains("resident ID number") && !stderr.contains("110105194912310021"), "{stderr}");

    assert_eq!(ws.run(&["verify", "--trust", "trust.json", "--centre", "41080", "LM1:"]).status.code(), Some(2));
    assert_eq!(ws.run(&["verify", "--trust", "missing.json", "--centre", "440300", "LM1:"]).status.code(), Some(2));
    std::fs::write(ws.path("not-a-qr.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    assert_eq!(ws.verify(LATER, &["--image", "not-a-qr.png"]).status.code(), Some(2));
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let code = stdout(&ws.issue(&key, MORNING, &[])).trim_end().to_string();
    let mut child = ws.spawn(&["verify", "--trust", "trust.json", "--centre", "440300", "--at", LATER]);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // Far more verdicts than a pipe buffers; the write fails once the child has exited.
        for _ in 0..20_000 {
            if writeln!(stdin, "{code}").is_err() {
                break;
            }
        }
    });
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    assert!(first_line.starts_with("VALID"));
    // The reader is dropped here: the next verdict the child writes meets a broken pipe.
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn loan_evaluate_compares_policies_and_check_names_bad_fields() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let code = stdout(&ws.issue(&key, MORNING, &["--audience", "440300"])).trim_end().to_string();
    let evaluate = |at: &str, extra: &[&str]| {
        let mut args = vec!["loan", "evaluate", "--trust", "trust.json", "--centre", "440300", "--at", at];
        if !extra.contains(&"--house-price-yuan") {
            args.extend(["--house-price-yuan", "700000"]);
        }
        args.extend_from_slice(extra);
        args.push(&code);
        ws.run(&args)
    };
    let output = evaluate(LATER, &["--policy", "jiaozuo-2024", "--policy", "jiaozuo-before-2024", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let evaluations: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(evaluations[0]["max_amount_fen"], 56_000_000);
    assert_eq!(evaluations[0]["decided_by"], "price-ratio");
    assert_eq!(evaluations[1]["max_amount_fen"], 32_000_000);
    // The policies are Jiaozuo's, the counter Shenzhen's: said, not silently applied.
    assert!(String::from_utf8_lossy(&output.stderr).contains("policy jiaozuo-2024 belongs to centre 410800"));
    assert_eq!(evaluations[0]["figures"][1]["source"], "code-claims");
    // One vocabulary with the gRPC API: amounts in fen named so, reasons as {party, reason}.
    let cheap = evaluate(LATER, &["--json", "--house-price-yuan", "100"]);
    assert_eq!(cheap.status.code(), Some(1), "not eligible anywhere");
    let cheap: serde_json::Value = serde_json::from_slice(&cheap.stdout).unwrap();
    assert_eq!(cheap[0]["reasons"][0], serde_json::json!({"party": "house", "reason": "PRICE_TOO_LOW"}));
    assert_eq!(cheap[0]["decided_by"], serde_json::Value::Null, "no cap decides an ineligible loan");
    assert_eq!(cheap[0]["steps"][0]["amount_fen"], 60_000_000);
    let table = evaluate(LATER, &[]);
    assert!(stdout(&table).contains("560000.00"), "{}", stdout(&table));
    let ineligible = evaluate(LATER, &["--house-price-yuan", "100"]);
    assert!(!stdout(&ineligible).contains("price-ratio"), "{}", stdout(&ineligible));
    let term = evaluate(LATER, &["--term", "35"]);
    assert!(stdout(&term).contains("no (at most 30)"), "{}", stdout(&term));
    // Bad arguments: exit 2 with a message that says what is wrong.
    for (extra, message) in [
        (&["--house-price-yuan", "0"][..], "must be positive"),
        (&["--house-price-yuan", "-1"][..], "not a positive amount"),
        (&["--term", "0"][..], "--term"),
        (&["--co-borrower", code.as_str()][..], "same member"),
    ] {
        let refused = evaluate(LATER, extra);
        assert_eq!(refused.status.code(), Some(2), "{extra:?}");
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(error.contains(message), "{extra:?}: {error}");
        assert!(!error.contains("-- -1"), "{error}");
    }
    let expired = evaluate("2026-11-27T00:00:00+08:00", &[]);
    assert_eq!(expired.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&expired.stderr).contains("EXPIRED"));

    let policy = liangma::loan::policy::BUILT_IN[0].1.replace("multiple = 30", "multiple = 300");
    std::fs::write(ws.path("policy.toml"), policy).unwrap();
    let checked = ws.run(&["loan", "check", "policy.toml"]);
    assert_eq!(checked.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&checked.stderr).contains("multiple = 300: between 1 and 100"));
    assert!(ws.ok(&["loan", "check", "jiaozuo-2024"]).contains("valid"));
}

/// Every frozen vector through `liangma verify`: its verdict, and never a panic (exit 101),
/// whatever times or values the signed claims hold.
#[test]
fn every_test_vector_gives_its_verdict_through_the_cli() {
    let ws = Workspace::new();
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/vectors/v1.json").unwrap()).unwrap();
    std::fs::write(ws.path("trust.json"), vectors["trust_list"].to_string()).unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        let verifier = &case["verifier"];
        let mut args = vec!["verify", "--trust", "trust.json", "--json"];
        args.extend(["--centre", verifier["centre"].as_str().unwrap()]);
        args.extend(["--at", verifier["now"].as_str().unwrap()]);
        let skew = verifier["clock_skew_seconds"].to_string();
        args.extend(["--skew-secs", skew.as_str()]);
        for purpose in verifier["purposes"].as_array().unwrap() {
            args.extend(["--purpose", purpose.as_str().unwrap()]);
        }
        args.push(case["text"].as_str().unwrap());
        let output = ws.run(&args);
        let expected = case["expected_verdict"].as_str().unwrap();
        assert_eq!(output.status.code(), Some(if expected == "VALID" { 0 } else { 1 }), "{}", case["name"]);
        let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(verdict["verdict"], expected, "{}", case["name"]);
    }
}

/// A validly signed code issued one second before the last instant RFC 3339 can write
/// (9999-12-31T23:59:59Z) expires in the year 10000 of China Standard Time: `verify` shows such
/// times as Unix seconds instead of panicking.
#[test]
fn verify_shows_times_beyond_year_9999_without_panicking() {
    use liangma::testkit::{JIAOZUO, KEYS, claims, key, seal};
    let ws = Workspace::new();
    let mut trust = liangma::trust::TrustList::new();
    let from = liangma::clock::Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let until = liangma::clock::Timestamp::parse_rfc3339("9999-12-31T23:59:59Z").unwrap();
    trust
        .add_key(JIAOZUO.parse().unwrap(), Some("焦作"), key(&KEYS.jiaozuo_current).verifying_key(), from, until)
        .unwrap();
    trust.save(&ws.path("trust.json")).unwrap();
    let mut late =
        claims(JIAOZUO, &KEYS.jiaozuo_current, "2026-11-26T09:30:00+08:00", liangma::code::Purpose::OffsiteLoan, None);
    late.issued_at = until.plus(-1);
    late.valid_for = 3_600;
    let text = seal(&KEYS.jiaozuo_current, &late);
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["verify", "--trust", "trust.json", "--centre", "440300", "--at", "9999-12-31T23:59:59Z"];
        args.extend_from_slice(extra);
        args.push(&text);
        let output = ws.run(&args);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("@253402304398"), "{}", stdout(&output));
    }
}

/// The directory signs the trust list; an offline verifier pinning the directory's key uses it
/// while fresh, warns once stale, refuses it expired, tampered or signed by anyone else.
#[test]
fn a_signed_trust_list_is_checked_against_the_pinned_directory_key() {
    let ws = Workspace::new();
    let key = ws.jiaozuo_key("2026-01-01T00:00:00+08:00");
    let code = stdout(&ws.issue(&key, MORNING, &[])).trim_end().to_string();
    let directory = ws.ok(&["keygen", "--centre", "100000", "--out-dir", "directory"]);
    let directory_key_id = directory.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let directory_pem = format!("directory/100000-{directory_key_id}.pem");
    let sign = |sequence: &str, extra: &[&str]| {
        let mut args = vec!["trust", "sign", "--trust", "trust.json", "--directory-key", &directory_pem];
        args.extend(["--sequence", sequence, "--out", "signed.json"]);
        args.extend_from_slice(extra);
        ws.run(&args)
    };
    let signing = sign("3", &["--next-update-secs", "3600", "--valid-secs", "86400", "--at", MORNING]);
    assert!(signing.status.success(), "{}", String::from_utf8_lossy(&signing.stderr));
    let signing = String::from_utf8(signing.stdout).unwrap();
    let public_key = signing.split("public key ").nth(1).unwrap().split(')').next().unwrap().to_string();
    let verify = |trust: &str, pinned: &str, at: &str| {
        ws.run(&["verify", "--trust", trust, "--directory-public-key", pinned, "--centre", "440300", "--at", at, &code])
    };
    let fresh = verify("signed.json", &public_key, MORNING);
    assert_eq!(fresh.status.code(), Some(0), "{}", String::from_utf8_lossy(&fresh.stderr));
    let stale = verify("signed.json", &public_key, "2026-11-26T23:00:00+08:00");
    assert_eq!(stale.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("stale"));
    let expired = verify("signed.json", &public_key, "2026-11-28T09:00:00+08:00");
    assert_eq!(expired.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&expired.stderr).contains("expired"));
    let other = hex::encode(liangma::trust::CentreKey::from_seed(&[9; 32]).verifying_key().as_bytes());
    let impostor = verify("signed.json", &other, MORNING);
    assert_eq!(impostor.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&impostor.stderr).contains("does not verify"));
    // A plain trust list is not a signed one.
    assert_eq!(verify("trust.json", &public_key, MORNING).status.code(), Some(2));
    // The signed list is never overwritten.
    assert!(!sign("4", &[]).status.success());
}
