//! The inventory ("SL Using Policy"), one handler per file: list with search, filters, sorting
//! and pagination; detail; add one; CSV template, import and export; transfer between LVAs;
//! remove. The rules of what a product instance may be are `outpost_app::inventory`'s.

mod bulk_product_instances;
mod create_product_instance;
mod export_product_instances;
mod get_product_instance;
mod import_product_instances;
mod list_product_instances;

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use outpost_db::{AccountId, AsyncPgConnection, ProductInstanceId, product_instances};

pub use bulk_product_instances::*;
pub use create_product_instance::*;
pub use export_product_instances::*;
pub use get_product_instance::*;
pub use import_product_instances::*;
pub use list_product_instances::*;

use crate::error::ApiError;

/// A product instance of the account, or 404 (absent and another tenant's look the same).
async fn find_pi(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<product_instances::ProductInstance, ApiError> {
    product_instances::find(conn, account, pi)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::not_found("product instance")
            } else {
                e.into()
            }
        })
}

/// A download's file name.
fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    }
}
