//! LoadBalancer: exact distributions per strategy, latency preference,
//! ejection after consecutive failures and probe-back after the cool-down,
//! and `Balance` as a tower service.

use std::collections::HashMap;
use std::time::Duration;

use keel_concurrency::{
    Balance, BalanceError, BalanceStrategy, CircuitBreaker, CircuitBreakerConfig,
    CircuitBreakerLayer, Clock, LoadBalancer, LoadBalancerConfig,
};
use tokio::time::advance;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn config(strategy: BalanceStrategy) -> LoadBalancerConfig {
    LoadBalancerConfig {
        strategy,
        eject_after_failures: 3,
        ejection_cooldown: Duration::from_secs(10),
    }
}

fn picks<T>(balancer: &LoadBalancer<T>, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            let guard = balancer.pick().unwrap();
            let index = guard.index();
            guard.success();
            index
        })
        .collect()
}

fn counts(indexes: &[usize]) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for &i in indexes {
        *counts.entry(i).or_default() += 1;
    }
    counts
}

#[test]
fn round_robin_takes_each_endpoint_in_turn() {
    let balancer = LoadBalancer::new(config(BalanceStrategy::RoundRobin), ["a", "b", "c"]).unwrap();
    assert_eq!(picks(&balancer, 7), [0, 1, 2, 0, 1, 2, 0]);
    let guard = balancer.pick().unwrap();
    assert_eq!(*guard.endpoint(), "b");
}

#[test]
fn weighted_gives_each_endpoint_its_weight_per_cycle_interleaved() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::Weighted))
        .weighted_endpoint("a", 5)
        .weighted_endpoint("b", 1)
        .weighted_endpoint("c", 1)
        .build()
        .unwrap();
    // Smooth: the heavy endpoint is spread out, not picked five times in a row.
    assert_eq!(picks(&balancer, 7), [0, 0, 1, 0, 2, 0, 0]);
    let counts = counts(&picks(&balancer, 700));
    assert_eq!((counts[&0], counts[&1], counts[&2]), (500, 100, 100));
}

#[test]
fn least_in_flight_picks_the_idle_endpoint() {
    let balancer = LoadBalancer::new(config(BalanceStrategy::LeastInFlight), [10, 20, 30]).unwrap();
    let busy: Vec<_> = (0..3).map(|_| balancer.pick().unwrap()).collect();
    // One call each; finish the one on endpoint 1: it is now the idle one.
    let mut busy: HashMap<usize, _> = busy.into_iter().map(|g| (g.index(), g)).collect();
    assert_eq!(busy.len(), 3);
    busy.remove(&1).unwrap().success();
    for _ in 0..5 {
        let guard = balancer.pick().unwrap();
        assert_eq!(guard.index(), 1);
        assert_eq!(*guard.endpoint(), 20);
    }
    assert_eq!(balancer.stats()[0].in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn power_of_two_choices_prefers_the_faster_endpoint() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::PowerOfTwoChoices))
        .endpoint("fast")
        .endpoint("slow-1")
        .endpoint("slow-2")
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let latency = [1u64, 50, 50];
    let mut chosen = Vec::new();
    for _ in 0..3000 {
        let guard = balancer.pick().unwrap();
        advance(Duration::from_millis(latency[guard.index()])).await;
        chosen.push(guard.index());
        guard.success();
    }
    // The fast endpoint wins every pair it is drawn into: 2 in 3.
    let fast = counts(&chosen)[&0];
    assert!(fast > 1800, "fast endpoint picked {fast} of 3000");
    let stats = balancer.stats();
    assert_eq!(stats[0].ewma_latency, Duration::from_millis(1));
    assert_eq!(stats[1].ewma_latency, Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn failing_endpoint_is_ejected_then_probed_back() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::RoundRobin))
        .endpoint("flaky")
        .endpoint("steady")
        .clock(Clock::tokio())
        .build()
        .unwrap();
    // Two failures, a success (the streak resets), then three in a row.
    for outcome in [false, false, true, false, false, false] {
        let flaky = balancer.pick().unwrap();
        assert_eq!(flaky.index(), 0);
        if outcome {
            flaky.success()
        } else {
            flaky.failure()
        }
        balancer.pick().unwrap().success();
    }
    assert!(balancer.stats()[0].ejected);
    assert_eq!(picks(&balancer, 6), [1; 6]);

    // Cool-down over: the next call is flaky's probe; others still skip it.
    advance(Duration::from_secs(10)).await;
    let probe = balancer.pick().unwrap();
    assert!(probe.is_probe());
    assert_eq!(probe.index(), 0);
    assert_eq!(picks(&balancer, 3), [1; 3]);
    probe.failure();
    assert_eq!(picks(&balancer, 3), [1; 3], "a failed probe ejects again");

    advance(Duration::from_secs(10)).await;
    let probe = balancer.pick().unwrap();
    assert!(probe.is_probe());
    probe.success();
    assert!(!balancer.stats()[0].ejected);
    assert_eq!(
        counts(&picks(&balancer, 4)).len(),
        2,
        "flaky is back in rotation"
    );
}

#[tokio::test(start_paused = true)]
async fn all_ejected_is_an_error_until_a_probe_is_due() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::LeastInFlight))
        .endpoint(())
        .clock(Clock::tokio())
        .build()
        .unwrap();
    for _ in 0..3 {
        balancer.pick().unwrap().failure();
    }
    assert_eq!(
        balancer.pick().unwrap_err(),
        BalanceError::NoHealthyEndpoint
    );
    advance(Duration::from_secs(10)).await;
    let probe = balancer.pick().unwrap();
    assert!(probe.is_probe());
    // A dropped (cancelled) probe lets the next call probe instead.
    drop(probe);
    assert!(balancer.pick().unwrap().is_probe());
}

#[test]
fn bad_configs_are_errors() {
    let empty: [&str; 0] = [];
    let error = LoadBalancer::new(LoadBalancerConfig::default(), empty).unwrap_err();
    assert_eq!(error.field, "load_balancer.endpoints");
    let error = LoadBalancer::builder(LoadBalancerConfig::default())
        .weighted_endpoint("a", 0)
        .build()
        .unwrap_err();
    assert_eq!(error.field, "load_balancer.weight");
    let zero = LoadBalancerConfig {
        eject_after_failures: 0,
        ..LoadBalancerConfig::default()
    };
    assert_eq!(
        LoadBalancer::new(zero, ["a"]).unwrap_err().field,
        "load_balancer.eject_after_failures"
    );
}

#[test]
fn config_reads_from_toml() {
    let config: LoadBalancerConfig =
        toml::from_str("strategy = \"power_of_two_choices\"\nejection_cooldown = \"30s\"").unwrap();
    assert_eq!(config.strategy, BalanceStrategy::PowerOfTwoChoices);
    assert_eq!(config.ejection_cooldown, Duration::from_secs(30));
    assert_eq!(config.eject_after_failures, 5);
    let error = toml::from_str::<LoadBalancerConfig>("strategy = \"random\"").unwrap_err();
    assert!(error.to_string().contains("round_robin"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn balance_service_spreads_calls_and_routes_around_a_broken_endpoint() {
    let endpoint = |id: u32, healthy: bool| {
        service_fn(move |_: ()| async move {
            if healthy {
                Ok::<_, BoxError>(id)
            } else {
                Err::<u32, BoxError>(format!("endpoint {id} is down").into())
            }
        })
    };
    let balancer = LoadBalancer::builder(config(BalanceStrategy::RoundRobin))
        .endpoint(endpoint(0, true))
        .endpoint(endpoint(1, false))
        .endpoint(endpoint(2, true))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let breaker =
        CircuitBreaker::with_clock("upstreams", CircuitBreakerConfig::default(), Clock::tokio())
            .unwrap();
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker))
        .service(Balance::new(balancer.clone()));
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(service.clone().oneshot(()).await.ok());
    }
    // Round robin reaches the broken endpoint three times, then it is ejected.
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 3);
    assert_eq!(
        &answers[..6],
        &[Some(0), None, Some(2), Some(0), None, Some(2)]
    );
    assert!(answers[9..].iter().all(|a| a.is_some()));
    let stats = balancer.stats();
    assert!(stats[1].ejected);
    assert_eq!(stats[1].picks, 3);
    assert_eq!(stats.iter().map(|s| s.in_flight).sum::<usize>(), 0);
}

proptest::proptest! {
    #[test]
    fn weighted_is_exact_over_every_cycle(weights in proptest::collection::vec(1u32..10, 1..6)) {
        let balancer = weights
            .iter()
            .enumerate()
            .fold(
                LoadBalancer::builder(config(BalanceStrategy::Weighted)),
                |builder, (i, &w)| builder.weighted_endpoint(i, w),
            )
            .build()
            .unwrap();
        let cycle: u32 = weights.iter().sum();
        for _ in 0..3 {
            let counts = counts(&picks(&balancer, cycle as usize));
            for (i, &w) in weights.iter().enumerate() {
                proptest::prop_assert_eq!(counts.get(&i).copied().unwrap_or(0), w as usize);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoints_share_is_spread_evenly() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::RoundRobin))
        .endpoint("a")
        .endpoint("broken")
        .endpoint("c")
        .endpoint("d")
        .clock(Clock::tokio())
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut broken = None;
        while broken.is_none() {
            let guard = balancer.pick().unwrap();
            if guard.index() == 1 {
                broken = Some(guard);
            } else {
                guard.success();
            }
        }
        broken.unwrap().failure();
    }
    assert!(balancer.stats()[1].ejected);
    let counts = counts(&picks(&balancer, 300));
    assert_eq!((counts[&0], counts[&2], counts[&3]), (100, 100, 100));
    assert!(!counts.contains_key(&1));
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_spreads_ties_evenly_around_an_ejected_endpoint() {
    let balancer = LoadBalancer::builder(config(BalanceStrategy::LeastInFlight))
        .endpoint("a")
        .endpoint("broken")
        .endpoint("c")
        .clock(Clock::tokio())
        .build()
        .unwrap();
    while !balancer.stats()[1].ejected {
        let guard = balancer.pick().unwrap();
        if guard.index() == 1 {
            guard.failure();
        }
    }
    let counts = counts(&picks(&balancer, 200));
    assert_eq!((counts[&0], counts[&2]), (100, 100));
}
