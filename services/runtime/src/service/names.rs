//! Generated container names: `adjective_surname`, like dockerd's, from Wharf's own lists
//! (sailing words and engineers of ships and harbours).

use rand::seq::SliceRandom;

const LEFT: &[&str] = &[
    "agile", "amber", "ardent", "bold", "brave", "breezy", "bright", "calm", "clever", "cool",
    "crisp", "daring", "deft", "eager", "earnest", "fair", "fearless", "fleet", "gallant",
    "gentle", "glad", "hardy", "honest", "jolly", "keen", "kind", "lively", "lucid", "merry",
    "mighty", "nimble", "noble", "patient", "plucky", "proud", "quick", "quiet", "ready", "salty",
    "serene", "sharp", "silent", "sleek", "snug", "spry", "steady", "stoic", "stout", "sturdy",
    "swift", "tidy", "trusty", "upbeat", "valiant", "vivid", "wary", "wise", "zesty",
];

const RIGHT: &[&str] = &[
    "archimedes",
    "brunel",
    "chapman",
    "cousteau",
    "cunard",
    "darwin",
    "drake",
    "ericsson",
    "fitzroy",
    "froude",
    "fulton",
    "harrison",
    "heyerdahl",
    "hopper",
    "humboldt",
    "kelvin",
    "lovelace",
    "magellan",
    "maury",
    "mercator",
    "nansen",
    "parsons",
    "piccard",
    "plimsoll",
    "rankine",
    "reynolds",
    "shackleton",
    "smeaton",
    "stevin",
    "telford",
    "thomson",
    "vasa",
    "watt",
    "yamamoto",
    "zheng",
];

/// A random `adjective_surname`; `attempt` > 0 appends a digit, as dockerd does on a clash.
pub fn generate(attempt: u32) -> String {
    let mut rng = rand::thread_rng();
    let left = LEFT.choose(&mut rng).expect("non-empty");
    let right = RIGHT.choose(&mut rng).expect("non-empty");
    if attempt == 0 {
        format!("{left}_{right}")
    } else {
        format!("{left}_{right}{}", rand::random::<u8>() % 10)
    }
}
