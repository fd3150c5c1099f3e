//! Writes the built-in component compiled ahead of time, as `just guest` does:
//! `cargo run -p sendbox --example precompile -- host/component/sendbox.x86_64-linux.cwasm`.

fn main() -> anyhow::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        anyhow::bail!("usage: precompile OUT.cwasm");
    };
    let compiled = sendbox::component::precompile()?;
    std::fs::write(&out, &compiled)?;
    Ok(())
}
