fn main() {
    // refinery embeds the folder at compile time: a new migration file
    // must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
}
