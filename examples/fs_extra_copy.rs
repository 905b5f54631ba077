//! `fs_extra::dir::copy` as a command, for benches/compare.sh: `fs_extra_copy SRC DST`
//! copies the contents of SRC into DST (created), like `cp -a SRC/. DST`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: fs_extra_copy SRC DST");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir(dst) {
        eprintln!("error: cannot create {dst}: {e}");
        return ExitCode::FAILURE;
    }
    let opts = fs_extra::dir::CopyOptions::new().content_only(true);
    match fs_extra::dir::copy(src, dst, &opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
