//! An SDK interceptor that writes each retried API call into the history of the node attempt
//! that made it: the SDK retries transient failures itself (standard mode, few attempts), and
//! an operator reading `trailhub history` should still see every one.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// Why the last attempt failed, kept between attempts of one call.
#[derive(Debug, Clone)]
struct LastFailure(String);

impl Storable for LastFailure {
    type Storer = StoreReplace<Self>;
}

/// Reports retried calls to [`trailhub_engine::report_call_retry`].
#[derive(Debug, Default)]
pub(crate) struct RetryHistory;

impl Intercept for RetryHistory {
    fn name(&self) -> &'static str {
        "trailhub::RetryHistory"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(_)) = context.output_or_error() {
            let reason = match context.response() {
                Some(response) => format!("HTTP {}", response.status().as_u16()),
                None => "a connection error or timeout".to_string(),
            };
            cfg.interceptor_state().store_put(LastFailure(reason));
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg
            .load::<RequestAttempts>()
            .map(|a| a.attempts())
            .unwrap_or(1);
        if attempt > 1 {
            let (service, operation) = cfg
                .load::<Metadata>()
                .map(|m| (m.service().to_lowercase(), m.name().to_string()))
                .unwrap_or_default();
            let reason = cfg
                .load::<LastFailure>()
                .map(|f| f.0.clone())
                .unwrap_or_else(|| "a transient failure".into());
            tracing::debug!(%service, %operation, attempt, %reason, "aws call retried");
            trailhub_engine::report_call_retry(&service, &operation, attempt, &reason);
        }
        Ok(())
    }
}
