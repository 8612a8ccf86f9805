//! A CloudTrail bucket in another region than the inventory's (cross-region replication, the
//! common case): S3 answers a client of the wrong region `301 PermanentRedirect` with the
//! bucket's region in `x-amz-bucket-region`; trailhub asks again there, and sends every later
//! call on that bucket there.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningOutput;
use aws_sdk_s3::operation::head_bucket::HeadBucketOutput;
use aws_sdk_s3::types::BucketVersioningStatus;
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::{Arc, Mutex};
use trailhub_engine::{PlanAction, PlanCtx, Task};
use trailhub_steps::AccountClients;
use trailhub_steps::tasks::Versioning;

/// Records each call as `Operation@region`.
#[derive(Debug, Clone, Default)]
struct Regions(Arc<Mutex<Vec<String>>>);

impl Intercept for Regions {
    fn name(&self) -> &'static str {
        "RegionRecorder"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map(|m| m.name().to_string());
        let region = cfg.load::<aws_config::Region>().map(|r| r.to_string());
        self.0.lock().expect("regions").push(format!(
            "{}@{}",
            operation.unwrap_or_default(),
            region.unwrap_or_default()
        ));
        Ok(())
    }
}

#[tokio::test]
async fn a_bucket_of_another_region_is_asked_where_it_is() {
    // Asked in ap-northeast-1, the bucket's region answers for it; asked in us-east-1, it is.
    let head = mock!(Client::head_bucket)
        .sequence()
        .http_response(|| {
            let mut response = aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(301).expect("status"),
                aws_smithy_types::body::SdkBody::empty(),
            );
            response
                .headers_mut()
                .insert("x-amz-bucket-region", "us-east-1");
            response
        })
        .output(|| {
            HeadBucketOutput::builder()
                .bucket_region("us-east-1")
                .build()
        })
        .build();
    let versioning = mock!(Client::get_bucket_versioning).then_compute_response(|_| {
        MockResponse::Output(
            GetBucketVersioningOutput::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
    });
    let regions = Regions::default();
    let recorder = regions.clone();
    let s3 = mock_client!(
        aws_sdk_s3,
        RuleMode::MatchAny,
        &[&head, &versioning],
        move |b| b
            .region(aws_config::Region::new(REGION))
            .interceptor(recorder.clone())
    );
    let base = account(SOURCE, Mocked::default(), &Calls::default());
    let clients = AccountClients::new(
        SOURCE,
        &base.caller_arn,
        s3,
        base.iam.clone(),
        base.cfn.clone(),
        base.cloudtrail.clone(),
        base.kms.clone(),
    );
    let mut ctx = context(vec![clients]);
    // Nothing known of the bucket yet (no bucket-check ran in this process).
    ctx.regions = Arc::default();
    let task = Versioning::new(ctx, SOURCE, SOURCE_BUCKET);

    let plan = task
        .plan(&PlanCtx {
            node: node_id("222222222222/versioning"),
        })
        .await
        .expect("planned");

    assert_eq!(plan.action, PlanAction::NoOp);
    assert_eq!(
        *regions.0.lock().expect("regions"),
        [
            "HeadBucket@ap-northeast-1",
            "HeadBucket@us-east-1",
            "GetBucketVersioning@us-east-1"
        ]
    );
}
