"""The wallet part of ``make demo``: a food voucher from offer to shop, and what it cannot buy.

After ``qamqor demo-birth`` and ``qamqor worker --once`` the demo household has offers, among
them the food voucher (``programs/food_voucher.yaml``: a wallet payment for food, activated
monthly, lapsing at month end). ``demo_wallet``:

1. takes an accepted wallet entitlement, or accepts the open food-voucher offer for the head
   of household (as the portal would: consent recorded, entitlement created);
2. credits this month (``credits.schedule_credits``: the same job cron runs);
3. registers a demo grocery shop (MCC 5411) and a pharmacy (5912) in the household's region;
4. activates the voucher, pays at the shop, and tries to pay at the pharmacy — refused,
   ``purpose_not_allowed``: food money does not buy medicine;
5. shows the program's report.

Every step is idempotent (fixed idempotency keys, registration by BIN), so running the demo
twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.kit.i18n import translate
from qamqor.privacy.demo import valid_number
from qamqor.privacy.households import head_of, household_region
from qamqor.proactive import offers
from qamqor.proactive.models import Entitlement, Offer
from qamqor.proactive.notify import local_day
from qamqor.wallet import credits, merchants, payments, reports, tranches
from qamqor.wallet.models import Tranche

PROGRAM = "food_voucher"
SHOP_BIN = valid_number("99041000101")
PHARMACY_BIN = valid_number("99041000201")


@dataclass
class DemoWallet:
    household_id: str
    entitlement_id: int
    tranche_id: int
    payment_id: int
    refusal_reason: str
    refusal_text: str
    report: reports.ProgramReport
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "household_id": self.household_id,
            "entitlement_id": self.entitlement_id,
            "tranche_id": self.tranche_id,
            "payment_id": self.payment_id,
            "refusal": {"reason": self.refusal_reason, "text": self.refusal_text},
            "report": self.report.to_dict(),
        }


def tenge(tiyn: int) -> str:
    whole, part = divmod(tiyn, 100)
    return f"{whole:,} ₸" + (f" {part:02d} tiyn" if part else "")


def _entitlement(session: Session, now: dt.datetime) -> Entitlement:
    """An accepted food-voucher entitlement; the open offer accepted when there is none."""
    found = session.scalars(
        select(Entitlement)
        .where(
            Entitlement.program_id == PROGRAM,
            Entitlement.channel == "wallet",
            Entitlement.status == "active",
        )
        .order_by(Entitlement.id.desc())
        .limit(1)
    ).first()
    if found is not None:
        return found
    for offer in session.scalars(
        select(Offer)
        .where(
            Offer.program_id == PROGRAM,
            Offer.status.in_(offers.OPEN),
            Offer.expires_at > now,
        )
        .order_by(Offer.id.desc())
    ):
        iin = offer.recipient_iin or head_of(session, offer.household_id, local_day(now))
        if iin is None:
            continue
        return offers.accept(session, offer.id, iin, "portal", now)
    raise QamqorError(
        "no food-voucher offer to accept: run `qamqor demo-birth` and `qamqor worker --once` "
        "first (make demo does)"
    )


def demo_wallet(
    session: Session, now: dt.datetime, say: Callable[[str], None] | None = None
) -> DemoWallet:
    """Run the wallet demo in the caller's transaction; ``say`` prints each step."""
    lines: list[str] = []

    def tell(text: str) -> None:
        lines.append(text)
        if say is not None:
            say(text)

    entitlement = _entitlement(session, now)
    household = entitlement.household_id
    tell(
        f"entitlement {entitlement.id}: household {household}, {PROGRAM}, "
        f"{tenge(entitlement.amount_tiyn)} a month for {entitlement.purpose}, "
        f"{entitlement.period_start} .. {entitlement.period_end or 'open'}"
    )
    month = credits.month_of(local_day(now))
    credited = credits.schedule_credits(session, month, now)
    tell(
        f"credits for {month:%Y-%m}: {credited.opened} opened, {credited.already} already there, "
        f"{tenge(credited.credited_tiyn)} from budget:{PROGRAM}"
    )
    tranche = session.scalars(
        select(Tranche).where(
            Tranche.entitlement_id == entitlement.id, Tranche.period_start == month
        )
    ).first()
    if tranche is None:
        raise QamqorError(
            f"entitlement {entitlement.id} is not paid in {month:%Y-%m} "
            f"(skipped: {dict(credited.skipped)})"
        )
    region = household_region(session, household, local_day(now)) or "75"
    shop = merchants.register(
        session,
        bin_=SHOP_BIN,
        name="Demo grocery «Береке»",
        category="5411",
        region_code=region,
        now=now,
    )
    pharmacy = merchants.register(
        session,
        bin_=PHARMACY_BIN,
        name="Demo pharmacy «Дәрі»",
        category="5912",
        region_code=region,
        now=now,
    )
    tell(
        f"merchants: {shop.name} (BIN {shop.bin}, 5411) and {pharmacy.name} (5912), region {region}"
    )
    tranches.activate(session, tranche.id, household, now)
    tell(
        f"tranche {tranche.id}: {tenge(tranche.amount_tiyn)} for food, activated, "
        f"expires {tranche.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    amount = max(1, tranche.amount_tiyn // 2)
    payer = head_of(session, household, local_day(now))
    payment = payments.pay(
        session,
        merchant_bin=shop.bin,
        idempotency_key=f"demo-{tranche.id}-shop",
        household_id=household,
        amount_tiyn=amount,
        now=now,
        payer_iin=payer,
    )
    tell(f"payment {payment.id} at {shop.name}: {tenge(payment.amount_tiyn)}, {payment.status}")
    try:
        payments.pay(
            session,
            merchant_bin=pharmacy.bin,
            idempotency_key=f"demo-{tranche.id}-pharmacy",
            household_id=household,
            amount_tiyn=min(amount, 150_000),
            now=now,
            payer_iin=payer,
        )
    except payments.PaymentRefusedError as refused:
        reason = refused.reason
        key = f"wallet.refusal.{reason}"
        available = refused.detail.get("available_tiyn", 0)
        text = translate(key, "ru", available=tenge(available if isinstance(available, int) else 0))
        if text == key:
            text = str(refused)
    else:  # the household holds medicine money too: the demo's point still needs a refusal
        raise QamqorError("the pharmacy accepted food-voucher money: check categories.yaml")
    tell(f"payment at {pharmacy.name} refused: {reason} — «{text}»")
    (report,) = reports.program_report(session, PROGRAM)
    tell(
        f"{PROGRAM}: credited {tenge(report.credited_tiyn)}, spent {tenge(report.spent_tiyn)}, "
        f"pending {tenge(report.pending_tiyn)}, returned {tenge(report.returned_tiyn)}, "
        f"outstanding {tenge(report.outstanding_tiyn)}"
    )
    return DemoWallet(
        household_id=household,
        entitlement_id=entitlement.id,
        tranche_id=tranche.id,
        payment_id=payment.id,
        refusal_reason=reason,
        refusal_text=text,
        report=report,
        lines=lines,
    )
