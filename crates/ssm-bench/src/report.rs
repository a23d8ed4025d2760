pub async fn run(_a: Args) -> anyhow::Result<bool> {
    Ok(true)
}
#[derive(clap::Args, Debug, Clone)]
pub struct Args {}
