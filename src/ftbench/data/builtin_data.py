"""A deterministic customer-support instruction dataset shaped like bitext's
(columns: flags, instruction, category, intent, response), so the laptop run needs no hub."""

from __future__ import annotations

import random

# intent -> (category, ways a customer asks, what the agent walks them through)
INTENTS: dict[str, tuple[str, list[str], list[str]]] = {
    "cancel_order": (
        "ORDER",
        [
            "I want to cancel order {order}",
            "how do I cancel my last order?",
            "cancel purchase {order} please",
            "can you help me cancel the order I placed yesterday",
        ],
        [
            "sign in to your account",
            "open Order History",
            "select order {order}",
            "choose Cancel Order",
            "confirm the cancellation",
        ],
    ),
    "track_order": (
        "ORDER",
        [
            "where is my order {order}?",
            "I need to track package {order}",
            "status of order {order}",
            "has my order shipped yet",
        ],
        [
            "open the Track Order page",
            "enter order number {order}",
            "check the carrier's latest scan",
            "enable delivery notifications",
        ],
    ),
    "change_order": (
        "ORDER",
        ["I need to change an item in order {order}", "can I modify my order?", "update the size in {order}"],
        ["go to Order History", "pick order {order}", "choose Edit Items", "save the new selection"],
    ),
    "get_refund": (
        "REFUND",
        ["I want a refund for {order}", "how can I get my money back?", "refund request for order {order}"],
        [
            "open Returns and Refunds",
            "select the items from {order}",
            "state the reason for the refund",
            "submit the request and keep the reference",
        ],
    ),
    "check_refund_policy": (
        "REFUND",
        ["what is your refund policy?", "how many days do I have to ask for a refund", "are refunds free"],
        ["read the Refund Policy page", "note the {days}-day window", "keep the original receipt"],
    ),
    "recover_password": (
        "ACCOUNT",
        ["I forgot my password", "I can't log in to my account", "reset the password for {email}"],
        ["click Forgot Password", "enter {email}", "open the reset link we email you", "choose a new password"],
    ),
    "delete_account": (
        "ACCOUNT",
        ["close my account please", "how do I delete my profile?", "remove account {email}"],
        ["sign in", "open Account Settings", "select Close Account", "confirm with your password"],
    ),
    "payment_issue": (
        "PAYMENT",
        ["my card was declined", "I was charged twice for {order}", "problem paying with {method}"],
        [
            "check the card details",
            "try {method} again after a few minutes",
            "contact your bank if it repeats",
            "send us the transaction id",
        ],
    ),
    "change_shipping_address": (
        "SHIPPING",
        [
            "I need to change my shipping address",
            "update the delivery address of {order}",
            "ship {order} to a new address",
        ],
        ["open Account Settings", "edit Shipping Addresses", "add the new address", "set it as default"],
    ),
    "delivery_period": (
        "DELIVERY",
        ["how long does delivery take?", "when will {order} arrive", "delivery time to {city}"],
        [
            "standard delivery takes {days} business days",
            "express takes one to two days",
            "check the estimate at checkout",
        ],
    ),
    "get_invoice": (
        "INVOICE",
        ["I need the invoice for {order}", "where can I download my bill?", "send me invoice {order}"],
        ["open Order History", "select {order}", "click Download Invoice", "save the PDF"],
    ),
    "contact_human_agent": (
        "CONTACT",
        ["I want to talk to a person", "connect me with an agent", "can I speak to someone about {order}"],
        ["call us at {phone}", "open live chat from the Help page", "keep order {order} at hand"],
    ),
    "complaint": (
        "FEEDBACK",
        ["I am unhappy with the service", "I want to file a complaint about {order}", "your courier was rude"],
        ["tell us what happened", "we log it with reference {order}", "a supervisor answers within {days} days"],
    ),
    "newsletter_subscription": (
        "NEWSLETTER",
        ["sign me up for the newsletter", "unsubscribe {email} from emails", "how do I stop promotional mail?"],
        ["open Communication Preferences", "toggle the newsletter", "save your choice"],
    ),
}

OPENERS = [
    "I'm sorry for the trouble.",
    "Thanks for reaching out.",
    "I understand how important this is.",
    "Happy to help with that.",
    "I can certainly help you with this.",
]
CLOSERS = [
    "Is there anything else I can help with?",
    "Let me know if you need more help.",
    "We're here if anything else comes up.",
    "Thank you for your patience.",
]
METHODS = ["Visa", "Mastercard", "PayPal", "bank transfer", "Apple Pay"]
CITIES = ["Lisbon", "Oslo", "Austin", "Nairobi", "Osaka", "Lyon", "Quito"]


def _fill(text: str, rng: random.Random) -> str:
    return text.format(
        order=f"#{rng.randint(10000, 99999)}",
        email=f"user{rng.randint(1, 999)}@example.com",
        method=rng.choice(METHODS),
        city=rng.choice(CITIES),
        days=rng.choice([3, 5, 7, 14, 30]),
        phone=f"+1-800-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
    )


def customer_support_rows(num_rows: int, seed: int) -> list[dict]:
    """`num_rows` rows, the same for the same seed on every machine."""
    rng = random.Random(seed)
    intents = sorted(INTENTS)
    rows = []
    for _ in range(num_rows):
        intent = rng.choice(intents)
        category, asks, steps = INTENTS[intent]
        instruction = _fill(rng.choice(asks), rng)
        if rng.random() < 0.3:
            instruction = instruction.capitalize()
        chosen = steps[: rng.randint(max(2, len(steps) - 1), len(steps))]
        lines = [f"{i}. {_fill(step, rng).capitalize()}." for i, step in enumerate(chosen, 1)]
        response = "\n".join([rng.choice(OPENERS), "Here is what to do:", *lines, rng.choice(CLOSERS)])
        rows.append(
            {"flags": "B", "instruction": instruction, "category": category, "intent": intent, "response": response}
        )
    return rows
