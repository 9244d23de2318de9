"""Pure market rules: the job lifecycle, which miner may take which job (later: scoring, order books)."""
