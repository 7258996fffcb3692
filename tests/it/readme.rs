//! The README's client examples are real code: every `rust` block is copied verbatim
//! from a file in `clients/rust/examples/` (which the build compiles and the tests run), and every
//! `python` block is run by the Python suite (`clients/python/tests/test_readme.py`).

#[test]
fn every_rust_block_in_the_readme_is_part_of_a_compiled_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let examples: Vec<String> = std::fs::read_dir(format!("{root}/clients/rust/examples"))
        .expect("clients/rust/examples/")
        .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("example"))
        .collect();
    let blocks = code_blocks(&readme, "rust");
    assert!(!blocks.is_empty(), "the README has Rust examples");
    for block in blocks {
        assert!(
            examples.iter().any(|example| example.contains(&block)),
            "this README block is not in any file under clients/rust/examples/:\n{block}"
        );
    }
}

/// The bodies of the fenced blocks tagged `language`.
fn code_blocks(markdown: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    markdown
        .split(&fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}
