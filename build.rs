//! Nothing is generated here. The fleet's etcd client (etcd-client)
//! compiles etcd's .proto files in its own build script with `$PROTOC`;
//! `.cargo/config.toml` points that at `packaging/protoc`, which runs the
//! protoc binary of the protoc-bin-vendored crate. Being a build-dependency
//! of this crate is what makes cargo fetch that crate before any build script
//! runs, so a fresh machine needs no protobuf package (docs/building.md).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
