"""invoice-collector: decides which overdue invoices need a reminder and drafts it, never sends."""
