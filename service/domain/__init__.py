"""The pure core: rows, money, dates and the stage decision. Imports nothing but the standard
library, Babel and email-validator — no Flask, no Google client, no database."""
