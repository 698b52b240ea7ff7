//! Rebuilds the server when a web UI asset is added, changed or removed: the assets under `ui/`
//! are embedded in the binary (`src/ui/assets.rs`), and cargo tracks a directory named here
//! recursively, new files included.

fn main() {
    println!("cargo:rerun-if-changed=ui");
}
