//! Off-site loan evaluation under Jiaozuo's current and previous policies (domain.md figures).

use proptest::prelude::*;

use liangma::code::{AccountStatus, DepositClaims, Fen, LoanState};
use liangma::loan::{
    Cap, Evaluation, House, Ineligibility, LoanApplication, LoanPolicy, Party, Role, Source, evaluate,
};

fn now() -> LoanPolicy {
    LoanPolicy::load("jiaozuo-2024").unwrap()
}

fn before() -> LoanPolicy {
    LoanPolicy::load("jiaozuo-before-2024").unwrap()
}

fn yuan(amount: u64) -> Fen {
    Fen(amount * 100)
}

fn depositor(balance_yuan: u64, months: u32) -> Party {
    Party {
        deposit: DepositClaims {
            account_status: AccountStatus::Normal,
            balance: yuan(balance_yuan),
            monthly_deposit: yuan(1_500),
            continuous_months: months,
            loan_state: LoanState::None,
            loans_used: 0,
            registry_version: 7,
        },
        source: Source::LiveRegistry,
    }
}

fn eval(policy: &LoanPolicy, application: &LoanApplication) -> Evaluation {
    evaluate(policy, application).unwrap()
}

fn reasons(evaluation: &Evaluation) -> Vec<(Role, Ineligibility)> {
    evaluation.reasons.iter().map(|reason| (reason.party, reason.reason)).collect()
}

fn new_house(borrower: Party, price_yuan: u64) -> LoanApplication {
    LoanApplication {
        borrower,
        co_borrower: None,
        house_price: yuan(price_yuan),
        house: House::New,
        requested_term_years: None,
    }
}

#[test]
fn the_worked_example_gives_560000_decided_by_the_price_ratio() {
    let evaluation = eval(&now(), &new_house(depositor(20_000, 30), 700_000));
    assert!(evaluation.eligible);
    assert_eq!(evaluation.max_amount, yuan(560_000));
    assert_eq!(evaluation.decided_by, Some(Cap::PriceRatio));
    assert_eq!(evaluation.max_term_years, 30);
    let formula = &evaluation.steps[0];
    assert_eq!(formula.amount, Some(yuan(600_000)), "{}", formula.description);
    assert!(formula.description.contains("× multiple 30 × time coefficient 1.0"), "{}", formula.description);
    let balance = evaluation.figures.iter().find(|f| f.name == "borrower.balance").unwrap();
    assert_eq!((balance.value.as_str(), balance.source), ("20000.00 yuan", Source::LiveRegistry));
    assert_eq!(evaluation.figures.iter().find(|f| f.name == "house_price").unwrap().source, Source::Request);
    let multiple = evaluation.figures.iter().find(|f| f.name == "policy.multiple").unwrap();
    assert_eq!((multiple.value.as_str(), multiple.source), ("30", Source::Policy));
}

#[test]
fn the_same_member_under_the_previous_policy() {
    // 20,000 × 20 × 0.8 (30 months: below the 36 then needed) = 320,000; 60% of 700,000 = 420,000.
    let evaluation = eval(&before(), &new_house(depositor(20_000, 30), 700_000));
    assert_eq!(evaluation.max_amount, yuan(320_000));
    assert_eq!(evaluation.decided_by, Some(Cap::Formula));
}

#[test]
fn exactly_24_months_reach_the_full_coefficient_23_do_not() {
    let at_24 = eval(&now(), &new_house(depositor(20_000, 24), 2_000_000));
    let at_23 = eval(&now(), &new_house(depositor(20_000, 23), 2_000_000));
    assert_eq!(at_24.max_amount, yuan(600_000));
    assert_eq!(at_23.max_amount, yuan(480_000));
    assert_eq!((at_24.decided_by, at_23.decided_by), (Some(Cap::Formula), Some(Cap::Formula)));
}

#[test]
fn the_absolute_cap_of_800000() {
    let evaluation = eval(&now(), &new_house(depositor(40_000, 60), 2_000_000));
    assert_eq!(evaluation.steps[0].amount, Some(yuan(1_200_000)));
    assert_eq!(evaluation.max_amount, yuan(800_000));
    assert_eq!(evaluation.decided_by, Some(Cap::AbsoluteCap));
    assert_eq!(eval(&before(), &new_house(depositor(40_000, 60), 2_000_000)).max_amount, yuan(600_000));
}

#[test]
fn zero_balance_abnormal_account_and_outstanding_loan_are_not_eligible() {
    let zero = eval(&now(), &new_house(depositor(0, 30), 700_000));
    assert!(!zero.eligible);
    assert_eq!(reasons(&zero), [(Role::Borrower, Ineligibility::NoBalance)]);
    assert_eq!(zero.max_amount, Fen(0));

    let mut sealed = depositor(20_000, 30);
    sealed.deposit.account_status = AccountStatus::Sealed;
    assert_eq!(
        reasons(&eval(&now(), &new_house(sealed, 700_000))),
        [(Role::Borrower, Ineligibility::AccountNotNormal)]
    );

    let mut repaying = depositor(20_000, 30);
    repaying.deposit.loan_state = LoanState::Outstanding;
    repaying.deposit.loans_used = 1;
    let evaluation = eval(&now(), &new_house(repaying, 700_000));
    assert_eq!(reasons(&evaluation), [(Role::Borrower, Ineligibility::OutstandingLoan)]);
    assert_eq!(evaluation.decided_by, None, "no cap decides an ineligible application");
    assert_eq!((evaluation.max_amount, evaluation.max_term_years), (Fen(0), 0));

    let mut settled = repaying;
    settled.deposit.loan_state = LoanState::Settled;
    assert!(eval(&now(), &new_house(settled, 700_000)).eligible, "a settled first loan does not block");

    let short = eval(&now(), &new_house(depositor(20_000, 5), 700_000));
    assert_eq!(reasons(&short), [(Role::Borrower, Ineligibility::InsufficientContinuousDeposit)]);
}

#[test]
fn two_party_depositors_add_their_formulas() {
    // 20,000 × 30 × 1.0 + 10,000 × 30 × 0.8 = 840,000 -> capped at 800,000.
    let mut application = new_house(depositor(20_000, 30), 1_500_000);
    application.co_borrower = Some(depositor(10_000, 12));
    let evaluation = eval(&now(), &application);
    assert_eq!(evaluation.steps[2].amount, Some(yuan(840_000)));
    assert_eq!((evaluation.max_amount, evaluation.decided_by), (yuan(800_000), Some(Cap::AbsoluteCap)));
    // Under the previous policy two-party depositors had 80% instead of 60%:
    // 20,000 × 20 × 0.8 + 10,000 × 20 × 0.6 = 440,000; 80% of 500,000 = 400,000.
    application.house_price = yuan(500_000);
    let earlier = eval(&before(), &application);
    assert_eq!((earlier.max_amount, earlier.decided_by), (yuan(400_000), Some(Cap::PriceRatio)));
    // A co-borrower's problem is reported as theirs.
    application.co_borrower.as_mut().unwrap().deposit.account_status = AccountStatus::Frozen;
    assert_eq!(reasons(&eval(&now(), &application)), [(Role::CoBorrower, Ineligibility::AccountNotNormal)]);
}

#[test]
fn second_hand_term_is_40_years_minus_the_building_age() {
    let mut application = new_house(depositor(20_000, 30), 700_000);
    application.house = House::SecondHand { building_age_years: 15 };
    application.requested_term_years = Some(30);
    let evaluation = eval(&now(), &application);
    assert_eq!(evaluation.max_term_years, 25);
    assert_eq!(evaluation.requested_term_allowed, Some(false));
    assert!(evaluation.steps.iter().any(|step| step.description.contains("exceeds the maximum 25")));
    application.requested_term_years = Some(25);
    assert_eq!(eval(&now(), &application).requested_term_allowed, Some(true));
    application.requested_term_years = None;
    assert_eq!(eval(&now(), &application).requested_term_allowed, None);
    assert_eq!(eval(&before(), &application).max_term_years, 15, "30 years minus 15 before the reform");
    application.house = House::SecondHand { building_age_years: 5 };
    assert_eq!(eval(&now(), &application).max_term_years, 30, "never beyond the policy maximum");
    application.house = House::SecondHand { building_age_years: 40 };
    let too_old = eval(&now(), &application);
    assert_eq!(reasons(&too_old), [(Role::House, Ineligibility::BuildingTooOld)]);
}

#[test]
fn a_loan_that_rounds_to_nothing_names_the_cap_that_made_it_so() {
    // 80% of a 100-yuan house is 80 yuan: below the 100-yuan rounding unit, whatever the balance.
    let cheap = eval(&now(), &new_house(depositor(20_000, 30), 100));
    assert_eq!(reasons(&cheap), [(Role::House, Ineligibility::PriceTooLow)]);
    // 1 yuan × 30 × 1.0 = 30 yuan of formula: the balance is what is too low.
    let tiny = eval(&now(), &new_house(depositor(1, 30), 700_000));
    assert_eq!(reasons(&tiny), [(Role::Borrower, Ineligibility::BalanceTooLow)]);
}

#[test]
fn figures_beyond_the_published_bounds_are_refused_not_wrapped() {
    let mut application = new_house(depositor(20_000, 30), 2_000_000);
    let mut huge = depositor(0, 30);
    huge.deposit.balance = Fen(1 << 63);
    application.borrower = huge;
    application.co_borrower = Some(huge);
    let error = evaluate(&now(), &application).unwrap_err();
    assert_eq!((error.party, error.error.field), (Role::Borrower, "balance_fen"));
}

proptest! {
    #[test]
    fn the_amount_never_exceeds_a_cap_and_never_falls_as_the_balance_grows(
        balance in 0..5_000_000u64,
        extra in 0..5_000_000u64,
        months in 0..600u32,
        price in 1..10_000_000u64,
        two_party in any::<bool>(),
        policy in prop::sample::select(vec!["jiaozuo-2024", "jiaozuo-before-2024"]),
    ) {
        let policy = LoanPolicy::load(policy).unwrap();
        let application = |balance_yuan: u64| {
            let mut application = new_house(depositor(balance_yuan, months), price);
            if two_party {
                application.co_borrower = Some(depositor(1_000, months));
            }
            application
        };
        let lower = eval(&policy, &application(balance));
        let higher = eval(&policy, &application(balance + extra));
        let ratio = if two_party { policy.two_party_ratio } else { policy.single_party_ratio };
        for evaluation in [&lower, &higher] {
            prop_assert!(evaluation.max_amount <= policy.absolute_cap);
            prop_assert!(u128::from(evaluation.max_amount.0) * 10_000 <= u128::from(yuan(price).0) * u128::from(ratio));
        }
        let formula: u64 =
            lower.steps.iter().filter(|s| s.description.contains("× multiple")).filter_map(|s| s.amount).map(|a| a.0).sum();
        prop_assert!(lower.max_amount.0 <= formula);
        prop_assert!(higher.max_amount >= lower.max_amount);
    }
}
