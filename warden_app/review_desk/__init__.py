"""The supervisor's review desk (/review/): server-rendered pages over the review services."""
