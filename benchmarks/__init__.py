"""Scale runs of licenseflow and the synthetic-enterprise generator they (and the demo) use."""
