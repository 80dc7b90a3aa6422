//! Reading a spec from YAML or JSON, with errors that name the field.

use crate::group::GroupSpec;
use crate::validate::{FieldError, validate};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The document does not have the spec's shape (wrong type, unknown field, bad syntax).
    #[error("{0}")]
    Malformed(FieldError),
    /// The document parsed but breaks a rule.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl SpecError {
    pub fn fields(&self) -> Vec<FieldError> {
        match self {
            SpecError::Malformed(e) => vec![e.clone()],
            SpecError::Invalid(v) => v.clone(),
        }
    }
}

/// Parses a YAML or JSON document (JSON is YAML's subset, but JSON gets serde_json's messages)
/// and validates it.
pub fn parse_spec(text: &str) -> Result<GroupSpec, SpecError> {
    crate::budget::prescan(text).map_err(SpecError::Malformed)?;
    let trimmed = text.trim_start();
    let spec: GroupSpec = if trimmed.starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        let spec = serde_path_to_error::deserialize(&mut *de)
            .map_err(|e| malformed(e.path().to_string(), e.inner().to_string()))?;
        // One document: anything after it but white space is an error, not ignored.
        de.end().map_err(|e| {
            SpecError::Malformed(FieldError::new(
                "spec",
                format!("unexpected data after the JSON document ({e})"),
            ))
        })?;
        spec
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| malformed(e.path().to_string(), e.inner().to_string()))?
    };
    validate(&spec).map_err(SpecError::Invalid)?;
    Ok(spec)
}

/// Every error of a spec, as `field: message` lines (none when it is valid); for tests.
#[cfg(test)]
pub(crate) fn field_errors(yaml: &str) -> Vec<String> {
    match parse_spec(yaml) {
        Ok(_) => vec![],
        Err(e) => e.fields().iter().map(|f| f.to_string()).collect(),
    }
}

fn malformed(path: String, msg: String) -> SpecError {
    let mut field = if path == "." { String::new() } else { path };
    // yaml_serde starts its message with the path (of the map, for an unknown field).
    let mut message = match msg.split_once(": ") {
        Some((pre, rest)) if !pre.is_empty() && field.starts_with(pre) => rest.to_string(),
        _ => msg,
    };
    // A missing field is named in the message; make it the path.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    if let Some(name) = missing {
        let field = if field.is_empty() {
            name
        } else {
            format!("{field}.{name}")
        };
        return SpecError::Malformed(FieldError {
            field,
            message: "is required".to_string(),
        });
    }
    // serde names an unknown field in the message; make it part of the path instead.
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'));
    if let Some((name, tail)) = unknown {
        if !field.ends_with(name) {
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
        }
        message = format!(
            "unknown field{}",
            tail.split(" at line").next().unwrap_or("")
        );
    }
    if field.is_empty() {
        field = "spec".to_string();
    }
    SpecError::Malformed(FieldError { field, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name: web
restart_policy: Always
termination_grace_period_seconds: 10
init_containers:
  - name: setup
    image: 127.0.0.1:5000/busybox:latest
    command: ["sh", "-c", "echo init done"]
containers:
  - name: server
    image: 127.0.0.1:5000/busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    working_dir: /
    env: [{name: GREETING, value: hello}]
    ports: [{port: 8080, protocol: TCP}]
    cpu: 0.5
    memory: 256Mi
  - name: client
    image: 127.0.0.1:5000/busybox:latest
    command: ["sh", "-c", "wget -qO- http://127.0.0.1:8080/ ; echo $GREETING; sleep 3600"]
"#;

    #[test]
    fn parses_the_readme_example() {
        let s = parse_spec(EXAMPLE).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.containers.len(), 2);
        assert_eq!(s.containers[0].cpu.as_ref().unwrap().0, "0.5");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(parse_spec(&json).unwrap(), s);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_spec("name: a\ncontainers:\n  - name: b\n    image: x\n    imagee: y\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("containers[0].imagee: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let e = parse_spec("name: a\nfoo: 1\ncontainers: []\n").unwrap_err();
        assert!(e.to_string().starts_with("foo: unknown field"), "{e}");
        let e = parse_spec(r#"{"name":"a","containers":[],"bar":1}"#).unwrap_err();
        assert!(e.to_string().starts_with("bar: unknown field"), "{e}");
    }

    #[test]
    fn not_a_spec() {
        let e = parse_spec("- just\n- a list\n").unwrap_err();
        assert!(e.to_string().starts_with("spec: "), "{e}");
        let e = parse_spec("{\"name\": ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "name: EOF while parsing a value at line 1 column 9"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse_spec(
            r#"{"name":"a","containers":[{"name":"b","image":"x","ports":[{"port":"http"}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("containers[0].ports[0].port:"),
            "{e}"
        );
    }

    #[test]
    fn bad_port_is_named() {
        let e = parse_spec("name: a\ncontainers:\n  - {name: b, image: x}\n  - {name: c, image: x, ports: [{port: 70000}]}\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "containers[1].ports[0].port: must be between 1 and 65535"
        );
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            doc.push_str(&format!("{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        doc.push_str("name: x\ncontainers: []\n");
        // Also where the expansion would be deserialised.
        let inner = doc
            .replace("containers: []", "containers: *l")
            .replace("a: &a", "x-a: &a");
        let t = std::time::Instant::now();
        assert!(parse_spec(&doc).is_err());
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        let t = std::time::Instant::now();
        assert!(parse_spec(&inner).is_err());
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
    }

    fn err(text: &str) -> String {
        parse_spec(text).unwrap_err().to_string()
    }

    #[test]
    fn what_a_hostile_tenant_sends_is_named() {
        assert_eq!(
            err("containers: [{name: a, image: b}]\n"),
            "name: is required"
        );
        assert_eq!(err("name: a\n"), "containers: is required");
        assert_eq!(
            err("name: a\ncontainers: [{name: a}]\n"),
            "containers[0].image: is required"
        );
        assert_eq!(err(r#"{"name":"a"}"#), "containers: is required");
        let e = err(r#"{"name":"a","containers":[{"name":"b","image":"c"}]} {"x":1}"#);
        assert!(
            e.starts_with("spec: unexpected data after the JSON document"),
            "{e}"
        );
        assert!(
            parse_spec("{\"name\":\"a\",\"containers\":[{\"name\":\"b\",\"image\":\"c\"}]}\n\n")
                .is_ok()
        );
        assert!(
            err("name: a\ncontainers: [{name: b, image: c, command: ['']}]\n")
                .starts_with("containers[0].command[0]: must name the program")
        );
        let e = err("name: a\ncontainers: [{name: b, image: !foo c}]\n");
        assert!(
            e.contains("YAML tags such as !foo are not supported"),
            "{e}"
        );
    }

    #[test]
    fn the_worst_documents_within_the_budgets_parse_quickly() {
        // As many collections as allowed, 60 deep; and 200 KB of scalars 60 deep.
        let unit = format!("{}{}", "[".repeat(60), "]".repeat(60));
        let many = format!("name: a\ncontainers: [{}]\n", vec![unit; 166].join(","));
        let deep = format!(
            "name: a\ncontainers: {}{}{}\n",
            "[".repeat(60),
            vec!["a"; 6_000].join(","),
            "]".repeat(60)
        );
        let flat = format!(
            "name: a\ncontainers: [{}]\n",
            vec!["aaa"; 100_000].join(",")
        );
        for body in [many, deep, flat] {
            let started = std::time::Instant::now();
            assert!(parse_spec(&body).is_err());
            let took = started.elapsed();
            // (A debug build; release is about ten times faster.)
            assert!(took < std::time::Duration::from_secs(1), "{took:?}");
            eprintln!("{} KB: {took:?}", body.len() / 1000);
        }
    }
}
