"""Data quality: validation rules (:mod:`.rules`, a pure engine), the validation driver
(:mod:`.validate`) and dataset comparison (:mod:`.diff`). The lineage every read records
and every write stores lives with the IO that produces it (:mod:`hpcproc.io.lineage`)."""
