//! The layout of `src/` must show the architecture, so two rules hold for it.
//! No import circle between files: a circle means two files are really one
//! job, or the seam between them is in the wrong place. No file longer than
//! `MAX_PRODUCTION_LINES` before its tests. Sources are read as text with `std`
//! only, so the check needs no build of the crate and no parser dependency.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest a file may be before its `#[cfg(test)]` section.
const MAX_PRODUCTION_LINES: usize = 600;

/// By convention unit tests sit at the end of a file, after this line at column 0.
const TEST_SECTION: &str = "#[cfg(test)]";

/// A file of the library crate; `main.rs` and test-only files are left out.
struct SourceFile {
    /// Relative to the crate root, with `/` separators: `src/controller/mod.rs`.
    name: String,
    /// The module it defines: `[]` is `crate`, `[controller, plan]` is `crate::controller::plan`.
    module: Vec<String>,
    text: String,
}

/// A path in production code that leads into the crate.
struct Reference {
    line: usize,
    /// As written, with its `use` group expanded: `super::plan::Scaling`.
    written: String,
    /// Absolute, without the leading `crate`: `[controller, plan, Scaling]`.
    target: Vec<String>,
}

/// A word, `::` or a single punctuation character, with its line number.
type Token = (usize, String);

#[test]
fn no_import_circles_between_files_of_src() {
    let files = library_files();
    let graph = dependency_graph(&files);
    let successors: Vec<BTreeSet<usize>> =
        graph.iter().map(|e| e.keys().copied().collect()).collect();
    let mut report = Vec::new();
    for component in circles(&successors) {
        let cycle = shortest_cycle(&successors, &component);
        let cycle: Vec<&str> = cycle.iter().map(|&i| files[i].name.as_str()).collect();
        let size = component.len();
        report.push(format!(
            "\n{size} files in a circle, e.g. {}:",
            cycle.join(" → ")
        ));
        for &from in &component {
            for (to, why) in graph[from].iter().filter(|(to, _)| component.contains(to)) {
                let (from, to) = (&files[from].name, &files[*to].name);
                report.push(format!(
                    "    {from} → {to}  (line {}: {})",
                    why.line, why.written
                ));
            }
        }
    }
    assert!(
        report.is_empty(),
        "import circles between files of src/ (a circle means two files are really one job, \
         or the seam between them is in the wrong place); cut one edge of each:{}",
        report.join("\n")
    );
}

#[test]
fn no_source_file_has_more_than_600_production_lines() {
    let oversized: Vec<String> = library_files()
        .iter()
        .map(|file| (&file.name, production_code(&file.text).lines().count()))
        .filter(|&(_, lines)| lines > MAX_PRODUCTION_LINES)
        .map(|(name, lines)| format!("    {name}: {lines} lines"))
        .collect();
    assert!(
        oversized.is_empty(),
        "files over {MAX_PRODUCTION_LINES} lines of production code; split them where the \
         architecture has a seam:\n{}",
        oversized.join("\n")
    );
}

/// Every `.rs` file under `src/`, sorted by name, without binary roots and test-only
/// files. A file no `mod` declares yet (mid-move) is checked too.
fn library_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    collect_rust_files(&root.join("src"), &mut paths);
    paths.sort();
    let mut files: Vec<SourceFile> = paths
        .iter()
        .filter_map(|path| {
            let name = path.strip_prefix(root).ok()?.to_str()?.replace('\\', "/");
            let module = module_of(&name)?;
            let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
            Some(SourceFile { name, module, text })
        })
        .collect();
    let test_only: Vec<Vec<String>> = files
        .iter()
        .filter(|file| is_test_only(&file.module, &files))
        .map(|file| file.module.clone())
        .collect();
    files.retain(|file| !test_only.contains(&file.module));
    files
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for path in entries.map(|entry| entry.expect("directory entry").path()) {
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, or `None` for binary roots (`src/main.rs`, `src/bin/`),
/// which cannot form a circle with the library.
fn module_of(name: &str) -> Option<Vec<String>> {
    let relative = name.strip_prefix("src/")?.strip_suffix(".rs")?;
    if relative == "main" || relative.starts_with("bin/") {
        return None;
    }
    let mut module: Vec<String> = relative.split('/').map(String::from).collect();
    if relative == "lib" || module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    Some(module)
}

/// Whether the file, or a module it sits in, is declared as `#[cfg(test)] mod name;`.
fn is_test_only(module: &[String], files: &[SourceFile]) -> bool {
    (1..=module.len()).any(|depth| {
        let (parent, child) = (&module[..depth - 1], &module[depth - 1]);
        let Some(parent) = files.iter().find(|file| file.module == parent) else {
            return false;
        };
        let lines: Vec<&str> = parent.text.lines().map(str::trim).collect();
        lines.windows(2).any(|pair| {
            let declared = pair[1]
                .strip_suffix(';')
                .and_then(|d| d.split_whitespace().last());
            pair[0] == TEST_SECTION && pair[1].contains("mod ") && declared == Some(child)
        })
    })
}

/// The text before the first column-0 `#[cfg(test)]` line, or all of it.
fn production_code(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == TEST_SECTION {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// For each file (by index), the files it depends on and the first reference to each.
fn dependency_graph(files: &[SourceFile]) -> Vec<BTreeMap<usize, Reference>> {
    let index: BTreeMap<&[String], usize> = files
        .iter()
        .enumerate()
        .map(|(i, file)| (file.module.as_slice(), i))
        .collect();
    let mut graph = Vec::new();
    for (from, file) in files.iter().enumerate() {
        let mut edges = BTreeMap::new();
        for reference in references(&file.module, production_code(&file.text)) {
            // The longest prefix that is a file: `plan::Scaling` lives in `plan.rs`.
            let target = &reference.target;
            let owner = (0..=target.len())
                .rev()
                .find_map(|len| index.get(&target[..len]));
            if let Some(&to) = owner
                && to != from
            {
                edges.entry(to).or_insert(reference);
            }
        }
        graph.push(edges);
    }
    graph
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn is_word(token: &str) -> bool {
    token.starts_with(is_word_char)
}

/// The crate paths named by `code`, written in the file of `module`: `use` trees
/// and inline paths starting with `crate`, `super`, `self` or a child module.
fn references(module: &[String], code: &str) -> Vec<Reference> {
    let tokens = tokenize(&blank_comments_and_literals(code));
    let text = |at: usize| tokens.get(at).map_or("", |(_, token)| token.as_str());
    let children: BTreeSet<&str> = (0..tokens.len())
        .filter(|&at| text(at) == "mod" && text(at + 2) == ";")
        .map(|at| text(at + 1))
        .collect();
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let line = tokens[at].0;
        let mut paths = Vec::new();
        // `use<'a>` is precise capturing in an `impl Trait`, not an import.
        if text(at) == "use" && text(at + 1) != "<" {
            let end = (at..tokens.len())
                .find(|&i| text(i) == ";")
                .unwrap_or(tokens.len());
            let tree: Vec<&str> = (at + 1..end).map(text).collect();
            paths = expand_use_tree(&tree);
            at = end;
        } else if is_word(text(at)) && (at == 0 || text(at - 1) != "::") {
            // A lone `crate` or `super` is a visibility (`pub(crate)`), not a path;
            // neither is the path in `pub(in crate::x)`.
            let in_visibility = at >= 3 && text(at - 1) == "in" && text(at - 3) == "pub";
            let path = inline_path(&tokens, at);
            if path.len() > 1 && !in_visibility {
                paths.push(path);
            }
        }
        for path in paths {
            if let Some(target) = resolve(module, &children, &path) {
                found.push(Reference {
                    line,
                    written: path.join("::"),
                    target,
                });
            }
        }
        at += 1;
    }
    found
}

/// The path starting at token `start`: words joined by `::`, up to a `<`, `{` or `(`.
fn inline_path(tokens: &[Token], start: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = start;
    while let Some((_, segment)) = tokens.get(at).filter(|(_, token)| is_word(token)) {
        path.push(segment.clone());
        if tokens.get(at + 1).is_none_or(|(_, token)| token != "::") {
            break;
        }
        at += 2;
    }
    path
}

/// The paths a `use` tree names: `super::{a::X, b::{self, Y}}` names
/// `super::a::X`, `super::b` and `super::b::Y`.
fn expand_use_tree(tree: &[&str]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut cursor = 0;
    while cursor < tree.len() {
        expand_subtree(tree, &mut cursor, &[], &mut paths);
    }
    paths
}

/// Expands the subtree at `cursor` below `prefix`, and moves `cursor` past it.
fn expand_subtree(
    tree: &[&str],
    cursor: &mut usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) {
    let mut path = prefix.to_vec();
    loop {
        match tree.get(*cursor).copied().unwrap_or_default() {
            "{" => {
                *cursor += 1;
                while *cursor < tree.len() && tree[*cursor] != "}" {
                    if tree[*cursor] == "," {
                        *cursor += 1;
                    } else {
                        expand_subtree(tree, cursor, &path, out);
                    }
                }
                *cursor += 1;
                return;
            }
            // `x::{self}` names `x`; a glob names the module it reads from.
            "self" | "*" if !path.is_empty() => {}
            word if is_word(word) => path.push(word.to_string()),
            // A leading `::` (an external crate) or something this checker does not know.
            _ => {
                *cursor += 1;
                return;
            }
        }
        *cursor += 1;
        if tree.get(*cursor) != Some(&"::") {
            break;
        }
        *cursor += 1;
    }
    if tree.get(*cursor) == Some(&"as") {
        *cursor += 2;
    }
    out.push(path);
}

/// Where `path`, written in the file of `module`, points inside the crate, or
/// `None` when it leads out of it (`std::`, `kube::`, a local variable).
fn resolve(module: &[String], children: &BTreeSet<&str>, path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut absolute = match first.as_str() {
        "crate" | "$crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module.split_last()?.1.to_vec(),
        child if children.contains(child) => [module, &[child.to_string()]].concat(),
        _ => return None,
    };
    for segment in rest {
        if segment == "super" {
            absolute.pop()?;
        } else {
            absolute.push(segment.clone());
        }
    }
    Some(absolute)
}

fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let (mut tokens, mut line, mut at) = (Vec::new(), 1, 0);
    while let Some(&c) = chars.get(at) {
        let start = at;
        if is_word_char(c) {
            while chars.get(at).is_some_and(|&c| is_word_char(c)) {
                at += 1;
            }
        } else if c == ':' && chars.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            line += usize::from(c == '\n');
            at += 1;
            if c.is_whitespace() {
                continue;
            }
        }
        tokens.push((line, chars[start..at].iter().collect()));
    }
    tokens
}

/// Blanks comments and string and char literals, keeping line breaks, so that
/// `crate::x` in a doc comment or a message is not taken for a path.
fn blank_comments_and_literals(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    // Where `pattern` ends, searching from `from`; the end of the text when absent.
    let end_of = |from: usize, pattern: &str| {
        let pattern: Vec<char> = pattern.chars().collect();
        let found = (from..chars.len()).find(|&i| chars[i..].starts_with(&pattern));
        found.map_or(chars.len(), |i| i + pattern.len())
    };
    let mut out = String::with_capacity(code.len());
    let mut at = 0;
    while at < chars.len() {
        let rest = &chars[at..];
        let raw = at == 0 || !(chars[at - 1].is_alphanumeric() || chars[at - 1] == '_');
        let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
        let end = match rest {
            ['/', '/', ..] => end_of(at, "\n"),
            ['/', '*', ..] => end_of(at + 2, "*/"),
            ['r', ..] if raw && rest.get(1 + hashes) == Some(&'"') => {
                end_of(at + 2 + hashes, &format!("\"{}", "#".repeat(hashes)))
            }
            ['"', ..] => {
                let mut i = at + 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i + 1
            }
            ['\'', '\\', ..] => end_of(at + 3, "'"),
            ['\'', _, '\'', ..] => at + 3,
            // Everything else stays, lifetimes (`'a`) included.
            [c, ..] => {
                out.push(*c);
                at += 1;
                continue;
            }
            [] => unreachable!(),
        };
        let end = end.min(chars.len());
        out.extend(
            chars[at..end]
                .iter()
                .map(|&c| if c == '\n' { c } else { ' ' }),
        );
        at = end;
    }
    out
}

/// The strongly connected components of more than one file: each file in one
/// reaches every other, so each holds at least one circle.
fn circles(successors: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let reach: Vec<BTreeSet<usize>> = (0..successors.len())
        .map(|n| reachable(successors, n))
        .collect();
    let mut placed = BTreeSet::new();
    let mut components = Vec::new();
    for start in 0..successors.len() {
        if placed.contains(&start) {
            continue;
        }
        let component: Vec<usize> = (0..successors.len())
            .filter(|&other| {
                other == start || (reach[start].contains(&other) && reach[other].contains(&start))
            })
            .collect();
        placed.extend(component.iter().copied());
        if component.len() > 1 {
            components.push(component);
        }
    }
    components
}

/// The nodes reachable from `start` by at least one edge (depth first).
fn reachable(successors: &[BTreeSet<usize>], start: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = successors[start].iter().copied().collect();
    while let Some(node) = stack.pop() {
        if seen.insert(node) {
            stack.extend(successors[node].iter().copied());
        }
    }
    seen
}

/// A shortest circle through the first node of `component`, closed on itself:
/// `[a, b, a]`. Breadth first, staying inside the component.
fn shortest_cycle(successors: &[BTreeSet<usize>], component: &[usize]) -> Vec<usize> {
    let start = component[0];
    let mut came_from = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in successors[node]
            .iter()
            .filter(|next| component.contains(next))
        {
            if next == start {
                let mut cycle = vec![start, node];
                while let Some(&previous) = came_from.get(cycle.last().unwrap()) {
                    cycle.push(previous);
                }
                cycle.reverse();
                return cycle;
            }
            if let Entry::Vacant(slot) = came_from.entry(next) {
                slot.insert(node);
                queue.push_back(next);
            }
        }
    }
    unreachable!("a strongly connected component has a circle through each node")
}

/// The checker is tested too: a checker that cannot fail is a defect.
mod checker {
    use super::*;

    /// The targets of the crate paths in `code`, as if it were the file `name`.
    fn targets(name: &str, code: &str) -> Vec<String> {
        let references = references(&module_of(name).unwrap(), code);
        references.iter().map(|r| r.target.join("::")).collect()
    }

    #[test]
    fn grouped_use_expands_recursively() {
        let code = "use super::{p::X, b::{Y, Z as W}, self};\nuse crate::x::{self, y::*};";
        let expected = ["a::p::X", "a::b::Y", "a::b::Z", "a", "x", "x::y"];
        assert_eq!(targets("src/a/m.rs", code), expected);
    }

    #[test]
    fn super_is_relative_to_the_module_of_the_file() {
        let code = "fn f() { super::failures::hold(); super::super::X::new() }";
        let from_leaf = ["controller::failures::hold", "X::new"];
        assert_eq!(targets("src/controller/reconcile.rs", code), from_leaf);
        // From `mod.rs` the parent is the crate root, which has no parent.
        assert_eq!(targets("src/controller/mod.rs", code), ["failures::hold"]);
        assert_eq!(module_of("src/lib.rs"), Some(vec![]));
        assert_eq!(module_of("src/main.rs"), None);
    }

    #[test]
    fn child_modules_resolve_and_external_crates_do_not() {
        let code = "pub mod plan;\npub use plan::Scaling;\nuse kube::runtime::controller::X;\n\
                    fn f() { plan::compute(); std::mem::take(x); let plan = 1; }";
        let expected = ["controller::plan::Scaling", "controller::plan::compute"];
        assert_eq!(targets("src/controller/mod.rs", code), expected);
        let visibility = "pub(crate) fn f() {}\npub(super) struct S;\npub(in crate::a) fn g() {}";
        assert!(targets("src/a/b.rs", visibility).is_empty());
        let capturing = "fn f() -> impl Sized + use<> {}\ncrate::x::y();";
        assert_eq!(targets("src/lib.rs", capturing), ["x::y"]);
    }

    #[test]
    fn comments_literals_and_tests_are_ignored() {
        let code = "//! crate::a\n/// [`crate::b`]\nfn f<'a>(s: &'a str) -> char { // crate::c\n\
                    /* crate::d */ let _ = (\"crate::e \\\" crate::f\", r#\"crate::g\"#, '\\'');\n\
                    crate::real::thing('\"') }\n#[cfg(test)]\nmod tests { use crate::h; }";
        assert_eq!(
            targets("src/lib.rs", production_code(code)),
            ["real::thing"]
        );
        let first = &references(&[], code)[0];
        assert_eq!(
            (first.line, first.written.as_str()),
            (5, "crate::real::thing")
        );
        let indented = "a\n    #[cfg(test)]\nb\n";
        assert_eq!(production_code(indented), indented);
    }

    #[test]
    fn test_only_children_are_recognised() {
        let name = "src/github/mod.rs";
        let text = "mod groups;\n#[cfg(test)]\nmod tests;\n".to_string();
        let files = [SourceFile {
            name: name.into(),
            module: module_of(name).unwrap(),
            text,
        }];
        let test_only = |name| is_test_only(&module_of(name).unwrap(), &files);
        assert!(test_only("src/github/tests.rs"));
        assert!(test_only("src/github/tests/deeper.rs"));
        assert!(!test_only("src/github/groups.rs"));
    }

    #[test]
    fn circles_are_found_in_a_small_graph() {
        let graph = |edges: &[&[usize]]| -> Vec<BTreeSet<usize>> {
            edges.iter().map(|e| e.iter().copied().collect()).collect()
        };
        // 0 → 1 → 2 → 0 is a circle; 3 → 0 and 2 → 4 only lead into or out of it.
        let successors = graph(&[&[1], &[2], &[0, 4], &[0], &[]]);
        assert_eq!(circles(&successors), [vec![0, 1, 2]]);
        assert_eq!(shortest_cycle(&successors, &[0, 1, 2]), [0, 1, 2, 0]);
        assert!(circles(&graph(&[&[1], &[2], &[]])).is_empty());
    }
}
