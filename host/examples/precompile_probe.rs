use wasmtime::{Config, Engine, component::Component};
fn main() -> anyhow::Result<()> {
    let wasm = sendbox::component::COMPONENT;
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.target("x86_64-unknown-linux-gnu")?;
    let flags: Vec<String> = std::env::args().skip(2).collect();
    for f in &flags {
        unsafe {
            config.cranelift_flag_enable(f);
        }
    }
    let engine = Engine::new(&config)?;
    let t = std::time::Instant::now();
    let bytes = engine.precompile_component(wasm)?;
    eprintln!("precompiled {} bytes in {:?}", bytes.len(), t.elapsed());
    std::fs::write(std::env::args().nth(1).unwrap(), &bytes)?;
    // load in a plain native engine
    let mut c2 = Config::new();
    c2.epoch_interruption(true);
    let e2 = Engine::new(&c2)?;
    match unsafe { Component::deserialize(&e2, &bytes) } {
        Ok(_) => eprintln!("native engine: loads"),
        Err(e) => eprintln!("native engine: {e:#}"),
    }
    let mut c3 = Config::new();
    c3.epoch_interruption(true);
    c3.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
    let e3 = Engine::new(&c3)?;
    match unsafe { Component::deserialize(&e3, &bytes) } {
        Ok(_) => eprintln!("pooled engine: loads"),
        Err(e) => eprintln!("pooled engine: {e:#}"),
    }
    Ok(())
}
