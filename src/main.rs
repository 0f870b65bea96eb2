fn main() {
    std::process::exit(ndt::cli::main());
}
