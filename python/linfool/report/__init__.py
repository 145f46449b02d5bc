"""The report: renders the experiments' results into one page (page), with the explore section
(explore, explore.js); computes nothing. Imports the layers below."""
