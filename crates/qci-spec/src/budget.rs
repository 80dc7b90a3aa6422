//! A linear pass over a YAML or JSON document that refuses, before any parser sees it, what
//! would make parsing slow or deep: nesting past [`MAX_DEPTH`], more than [`MAX_ALIASES`]
//! aliases, and YAML tags (which qci would otherwise silently ignore).
//!
//! Why a scan and not the parser's own limits: yaml_serde (libyaml underneath) has none for
//! depth, and 200 KB of nested flow brackets took it 18 s (quadratic). serde-saphyr has
//! budgets, but swapping parsers changes every error message users see for a problem one
//! pass in O(n) solves. The scan only has to be conservative: it may count a bracket that the
//! parser would not, and anything it lets through is bounded (depth 64, 2 MiB).

use crate::validate::FieldError;

/// Deepest nesting of mappings and sequences a spec may have (a real spec needs about 8).
pub const MAX_DEPTH: usize = 64;
/// Most aliases (`*name`) a document may use.
pub const MAX_ALIASES: usize = 64;
/// Most sequences and mappings in flow style (`[`, `{`) and block sequence entries (`- `) a
/// document may have: a real spec has a few hundred; each costs the parser work per level.
pub const MAX_COLLECTIONS: usize = 10_000;
/// Most parser work: each node costs its depth (libyaml checks every open flow level at each
/// token), so 100,000 scalars 60 levels deep are refused while a real spec uses a few thousand.
pub const MAX_WORK: usize = 400_000;

/// Where a problem is: 1-based line and column.
fn at(line: usize, col: usize, message: String) -> FieldError {
    FieldError::new("spec", format!("line {line} column {col}: {message}"))
}

/// Checks `text`'s nesting, aliases and tags in one pass; `Err` names the line.
pub fn prescan(text: &str) -> Result<(), FieldError> {
    // Block context: the indentation of each open block node, and for the current line how
    // many compact `- ` entries it opens.
    let mut indents: Vec<usize> = Vec::new();
    let mut flow: usize = 0;
    let mut aliases = 0;
    let mut collections = 0;
    let mut work = 0usize;
    // Inside a block scalar (`|` or `>`): lines indented more than this are its text.
    let mut block_scalar_parent: Option<usize> = None;
    let mut in_double = false;
    let mut in_single = false;
    for (n, line) in text.split('\n').enumerate() {
        let lineno = n + 1;
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = &line[indent..];
        if let Some(parent) = block_scalar_parent {
            if body.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        let quoted_continues = in_double || in_single;
        if flow == 0 && !quoted_continues {
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
            if indents.len() > MAX_DEPTH {
                return Err(at(
                    lineno,
                    indent + 1,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ));
            }
        }
        let mut depth_here = indents.len();
        let bytes = body.as_bytes();
        // The last character that was not a space on this line (0: none yet), and whether a
        // space came after it: together they say whether a node may start here.
        let mut prev = 0u8;
        let mut spaced = false;
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if in_double {
                match c {
                    b'\\' => i += 1,
                    b'"' => in_double = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            if in_single {
                if c == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 1;
                    } else {
                        in_single = false;
                    }
                }
                i += 1;
                continue;
            }
            if c == b' ' || c == b'\t' {
                spaced = true;
                i += 1;
                continue;
            }
            let node_start = (prev == 0 && !quoted_continues)
                || (flow > 0 && matches!(prev, b'[' | b'{' | b',' | b':'))
                || (spaced && matches!(prev, b':' | b'-' | b'?' | b','))
                || (spaced && after_anchor(body, i));
            let col = indent + i + 1;
            if node_start || c == b',' {
                work += depth_here + flow;
                if work > MAX_WORK {
                    return Err(at(
                        lineno,
                        col,
                        "too many nodes this deep for one spec".to_string(),
                    ));
                }
            }
            match c {
                b'#' if spaced || prev == 0 => break,
                b'"' if node_start => in_double = true,
                b'\'' if node_start => in_single = true,
                b'[' | b'{' if flow > 0 || node_start => {
                    flow += 1;
                    collections += 1;
                    opened(collections, depth_here + flow).map_err(|m| at(lineno, col, m))?;
                }
                b']' | b'}' if flow > 0 => flow -= 1,
                b'-' if flow == 0
                    && node_start
                    && matches!(bytes.get(i + 1), None | Some(b' ')) =>
                {
                    depth_here += 1;
                    collections += 1;
                    opened(collections, depth_here).map_err(|m| at(lineno, col, m))?;
                }
                b'*' if node_start => {
                    aliases += 1;
                    if aliases > MAX_ALIASES {
                        return Err(at(lineno, col, format!("more than {MAX_ALIASES} aliases")));
                    }
                }
                b'!' if node_start => {
                    let tag: String = body[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                        .take(40)
                        .collect();
                    return Err(at(
                        lineno,
                        col,
                        format!("YAML tags such as {tag} are not supported: remove it"),
                    ));
                }
                b'|' | b'>' if node_start && flow == 0 => {
                    block_scalar_parent = Some(indent);
                    break;
                }
                _ => {}
            }
            prev = c;
            spaced = false;
            i += 1;
        }
    }
    Ok(())
}

/// The budgets a newly opened sequence or mapping must fit: how many there are, how deep.
fn opened(collections: usize, depth: usize) -> Result<(), String> {
    if collections > MAX_COLLECTIONS {
        return Err(format!(
            "more than {MAX_COLLECTIONS} sequences and mappings"
        ));
    }
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

/// True when the word before the spaces before `i` is an anchor (`&name`).
fn after_anchor(body: &str, i: usize) -> bool {
    let word = body[..i]
        .trim_end()
        .rsplit([' ', '\t'])
        .next()
        .unwrap_or("");
    word.starts_with('&') && word.len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        prescan(text).unwrap_err().to_string()
    }

    #[test]
    fn ordinary_specs_pass() {
        for ok in [
            "name: a\ncontainers:\n  - name: b\n    image: x\n    command: [sh, -c, 'echo [x] {y}']\n",
            r#"{"name":"a","containers":[{"name":"b","image":"x","env":[{"name":"A","value":"[[[["}]}]}"#,
            "name: a\nvolumes:\n  - name: c\n    config_file:\n      files:\n        - path: x.json\n          content: |\n            {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n            - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\ncontainers: []\n",
            "msg: a[b\nother: c{d\nthird: \"!not a tag\"\nfourth: it's * fine\n",
            "a: &x {b: 1}\nc: *x\n",
            "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nname: a\n",
        ] {
            assert_eq!(prescan(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn deep_documents_are_refused_at_once() {
        let flow = format!("containers: {}", "[".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(
            err(&flow),
            "spec: line 1 column 76: nested deeper than 64 levels"
        );
        let json = format!("{{\"a\":{}", "{\"a\":".repeat(200));
        assert!(err(&json).contains("nested deeper than 64"));
        let dashes = format!("a:\n{}x\n", "- ".repeat(80));
        assert!(err(&dashes).contains("nested deeper than 64"));
        let mut block = String::new();
        for d in 0..80 {
            block.push_str(&format!("{}k{d}:\n", " ".repeat(d)));
        }
        assert_eq!(
            err(&block),
            "spec: line 65 column 65: nested deeper than 64 levels"
        );
        // Linear: 100 KB takes well under a millisecond (a quadratic scan would take seconds).
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn tags_and_alias_floods_are_refused() {
        assert_eq!(
            err("name: a\ncontainers:\n  - {name: b, image: !foo x}\n"),
            "spec: line 3 column 22: YAML tags such as !foo are not supported: remove it"
        );
        assert!(err("a: !!str 1\n").contains("!!str"));
        let many = format!("a: &x 1\nb: [{}]\n", vec!["*x"; 65].join(", "));
        assert!(err(&many).contains("more than 64 aliases"));
        let deep_and_wide = format!("a: {}{}\n", "[".repeat(60), vec!["a"; 100_000].join(","));
        assert!(err(&deep_and_wide).contains("too many nodes this deep"));
        let wide = format!("a: [{}]\n", vec!["[]"; 10_001].join(","));
        assert!(err(&wide).contains("more than 10000 sequences and mappings"));
    }
}
