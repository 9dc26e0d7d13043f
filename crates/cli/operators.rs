//! `trailmark operators create --email …`: make a console operator in the database the server
//! uses. The password comes from standard input (its first line, without the line ending), so it
//! never appears in the process list or the shell's history.

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::args::OperatorCreateArgs;
use crate::serve::{Access, open_store};

pub async fn create(args: OperatorCreateArgs) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!(
            "no password on standard input: pipe it in, e.g. `printf '%s\\n' \"$PASSWORD\" | trailmark operators create --email {}`",
            args.email
        );
    }
    let store = open_store(&args.storage, Access::Beside).await?;
    let operator = trailmark_app::console::create_operator(store.as_ref(), &args.email, password)
        .await
        .map_err(|error| match error {
            trailmark_app::AppError::Conflict(_) => {
                anyhow::anyhow!("an operator with the e-mail '{}' exists", args.email)
            }
            other => anyhow::Error::new(other),
        })?;
    eprintln!(
        "Created the operator {} ({}). They sign in at /console.",
        operator.email, operator.id
    );
    Ok(())
}
