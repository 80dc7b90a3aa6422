//! The fuzz targets: each takes arbitrary bytes, must never panic, and checks what must hold
//! of any answer. `tests/fuzz.rs` runs them with bolero: under `cargo test` on the committed
//! corpus (`tests/__fuzz__/<target>/corpus/`) and then random inputs for
//! `QCI_FUZZ_SECONDS` each (10 by default, 60 in the test command); with `cargo bolero test`
//! (`cargo +nightly bolero test -p qci-fuzz spec_tokens -T 60s`) under libFuzzer, coverage-guided;
//! what libFuzzer found new (after `cargo bolero reduce`, the smallest 150 per target) is part of
//! the corpus.

use std::io::Write;
use std::path::Path;

use qci_spec::{FirewallRule, FirewallSpec, parse_spec, validate_firewall};

/// A spec in YAML or JSON: parsed or refused, never a panic. A refusal names a field; an
/// accepted spec survives a round trip through JSON unchanged.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_spec(text) {
        Ok(spec) => {
            let json = serde_json::to_string(&spec).expect("a parsed spec serialises");
            let again = parse_spec(&json).expect("a parsed spec's JSON parses");
            assert_eq!(again, spec, "round trip changed the spec");
        }
        Err(e) => {
            for f in e.fields() {
                assert!(!f.field.is_empty(), "an error without a field: {e}");
                assert!(!f.message.is_empty(), "an error without a message: {e}");
            }
        }
    }
}

/// Pieces of YAML and JSON that specs are made of: random bytes pick them, so random runs
/// reach the parser's structure (and qci's rules) rather than stopping at the first byte.
const SPEC_TOKENS: &[&str] = &[
    "name: a\n",
    "containers:",
    "init_containers:",
    " - ",
    "\n",
    "  ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "name: b",
    "image: bb",
    "command: [sh]",
    "args: ['']",
    "ports: [{port: 80}]",
    "cpu: 0.5",
    "memory: 1Gi",
    "shm_size: 600Mi",
    "volumes:",
    "volume_mounts:",
    "mount_path: /proc",
    "empty_dir: {}",
    "config_file: {files: [{path: a, content: x}]}",
    "security_context: ",
    "capabilities: {add: [NET_ADMIN], drop: [ALL]}",
    "seccomp_profile: Unconfined",
    "sysctls: [{name: kernel.panic, value: '1'}]",
    "run_as_user: 0",
    "run_as_non_root: true",
    "network: {mode: vpc}",
    "&x ",
    "*x",
    "!tag ",
    "'",
    "\"",
    "|\n",
    ">\n",
    "# c\n",
    "\\",
    "\u{0}",
    "é",
    "{\"name\":\"a\"",
    "null",
    "~",
    "- - - ",
    "? ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "1e999",
    "-1",
    "99999999999999999999",
];

/// Rule words, for the same reason.
const RULE_TOKENS: &[&str] = &[
    "accept",
    "drop",
    "tcp",
    "udp",
    "icmp",
    "all",
    "8080",
    "1-65535",
    "0",
    "70000",
    "from",
    "to",
    "0.0.0.0/0",
    "10.0.0.0/8",
    "1.2.3.4/32",
    "1.2.3.4/33",
    "::/0",
    "priority",
    "5",
    ";",
    "{",
    "}",
    "\n",
    "\"",
    " ",
    "  ",
    "-",
    "/",
];

/// Joins the tokens the bytes pick.
pub fn from_tokens(data: &[u8], tokens: &[&str]) -> String {
    data.iter()
        .map(|b| tokens[usize::from(*b) % tokens.len()])
        .collect()
}

/// [`spec`] on a document made of spec pieces.
pub fn spec_tokens(data: &[u8]) {
    spec(from_tokens(data, SPEC_TOKENS).as_bytes());
}

/// [`firewall_rule`] on a rule made of rule words, space-separated.
pub fn firewall_tokens(data: &[u8]) {
    let words: Vec<&str> = data
        .iter()
        .map(|b| RULE_TOKENS[usize::from(*b) % RULE_TOKENS.len()])
        .collect();
    firewall_rule(words.join(" ").as_bytes());
}

/// Names a layer's entries use: nested dirs, `..`, absolute paths, whiteouts.
const LAYER_NAMES: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "etc/passwd",
    "..",
    "../x",
    "/abs",
    "s",
    "s/x",
    "a/.wh.b",
    ".wh..wh..opq",
    "a/.wh..wh..opq",
    "dev/null",
    "lower/file",
    "./a",
    "a//b",
];

/// [`layer`] on a tar whose entries the bytes describe: kind, name, link target.
pub fn layer_entries(data: &[u8]) {
    let mut b = tar::Builder::new(Vec::new());
    for chunk in data.chunks(3) {
        let [kind, name, target] = [0, 1, 2].map(|i| chunk.get(i).copied().unwrap_or(0));
        let name = LAYER_NAMES[usize::from(name) % LAYER_NAMES.len()];
        let target = LAYER_NAMES[usize::from(target) % LAYER_NAMES.len()];
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o755);
        let ty = match kind % 6 {
            0 => tar::EntryType::Regular,
            1 => tar::EntryType::Directory,
            2 => tar::EntryType::Symlink,
            3 => tar::EntryType::Link,
            4 => tar::EntryType::Char,
            _ => tar::EntryType::Fifo,
        };
        h.set_entry_type(ty);
        if matches!(ty, tar::EntryType::Symlink | tar::EntryType::Link) {
            let t = if kind & 0x80 != 0 { "/etc" } else { target };
            if h.set_link_name(t).is_err() {
                continue;
            }
        }
        let body: &[u8] = if ty == tar::EntryType::Regular {
            b"data"
        } else {
            b""
        };
        h.set_size(body.len() as u64);
        // Names are written as given (`..` and `/` included), as a hostile tar would.
        let n = name.as_bytes();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        h.set_cksum();
        if b.append(&h, body).is_err() {
            return;
        }
    }
    let Ok(mut tar) = b.into_inner() else { return };
    let _ = tar.flush();
    layer(&tar);
}

/// Quantities: parsed or refused, and parsing is consistent between the two kinds.
pub fn quantity(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = qci_spec::parse_cpu_millis(text) {
        // A CPU quantity is cores or millicores; its millis fit a u64 without wrapping.
        assert!(m < u64::MAX / 1000 || m == u64::MAX);
    }
    let _ = qci_spec::parse_memory_bytes(text);
}

/// A firewall rule in the CLI form: refused, or valid and rendered into nftables text in which
/// it is one line of known words (no way to smuggle another statement in).
pub fn firewall_rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rule) = FirewallRule::parse(text) else {
        return;
    };
    let spec = FirewallSpec {
        name: "fw".into(),
        rules: vec![rule.clone()],
    };
    if validate_firewall(&spec).is_err() {
        return;
    }
    let ruleset = qci_network::nft::firewall_ruleset(Some(std::slice::from_ref(&rule)));
    let line = ruleset
        .lines()
        .find(|l| l.trim_start().starts_with("ip saddr") || l.trim_start().starts_with("ip daddr"))
        .expect("the rule's line");
    assert!(
        line.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ./-:".contains(c)),
        "unexpected characters in {line:?}"
    );
    assert!(
        line.ends_with("accept") || line.ends_with("drop"),
        "{line:?}"
    );
    assert_eq!(ruleset.matches("chain ").count(), 2, "{ruleset}");
}

/// A layer blob: unpacked or refused; refused leaves nothing, and nothing lands outside.
pub fn layer(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let blob = root.join("blob");
    std::fs::write(&blob, data).expect("blob");
    let dest = root.join("layer");
    let links = root.join("links.json");
    let res = qci_image::unpack_layer(&blob, &dest, &links);
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .expect("read root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let allowed: &[&str] = if res.is_ok() {
        &["blob", "layer", "links.json"]
    } else {
        &["blob"]
    };
    assert!(
        names.iter().all(|n| allowed.contains(&n.as_str())),
        "left beside the layer: {names:?} ({res:?})"
    );
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read tmp")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(outside.len(), 1, "written outside the root: {outside:?}");
    if let Ok(()) = res {
        assert!(Path::new(&dest).is_dir());
    }
}
