"""Campaigns: importing call lists, the lead lifecycle (attempts, retries, callbacks, lockouts) and the lead source
the engine dials from, with every compliance gate applied at dial time."""

from dialer.campaign.importer import ColumnMapping, ImportReport, LeadImportError, Reject, import_csv
from dialer.campaign.lifecycle import Disposition, RetryPolicy, RetryRule
from dialer.campaign.source import CampaignError, CampaignLeads

__all__ = [
    "CampaignError",
    "CampaignLeads",
    "ColumnMapping",
    "Disposition",
    "ImportReport",
    "LeadImportError",
    "Reject",
    "RetryPolicy",
    "RetryRule",
    "import_csv",
]
