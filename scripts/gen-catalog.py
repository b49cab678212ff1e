#!/usr/bin/env python3
"""Generate a large, realistic, deterministic product catalog for shelfrank scale benchmarks.

Usage:
    python3 scripts/gen-catalog.py --products N --out FILE [--seed S] [--data DIR]

    N     number of products to write (e.g. 100000, 300000, 1000000)
    FILE  output JSONL path; outside the repository, or under the repository's bench-data/
          (created when missing). Any other place inside the repository is refused.
    S     random seed (default 42)
    DIR   the benchmark datasets (default: ../shared/datasets relative to the repository root,
          i.e. the parent of this script's folder). Read at run time, never copied.

Method
------
The generator starts from the real product titles of two public datasets:

* ``homedepot/catalog.jsonl``     54,667 Home Depot products (``{"id", "title"}``)
* ``online_retail/catalog.jsonl``  3,782 UK gift-shop products (``{"id", "title", "price"}``)

1. The real products are written first, unchanged in id and title (so the Home Depot dev qrels
   still refer to existing products once N >= 58,449), enriched with derived fields: a category
   path, the mined brand, a price (the real one for Online Retail, a synthetic one for Home
   Depot) and a popularity value. If N is smaller than the real catalog, only the first N real
   products are written.
2. Every real title is parsed once into a "base": its brand (mined from the titles' leading
   capitalised words: a 1-3 word prefix that starts at least 4 titles and occurs mostly at the
   start of titles, extended by a following word when most titles with that prefix share it
   or that word hardly occurs elsewhere, e.g. "BEHR", "Delta", "Hampton Bay", "Home
   Decorators Collection", "American Standard"), the spans of its
   colour/finish words (Chrome, Brushed Nickel, White, Oil Rubbed Bronze, ...), its sizes
   (``1/2 in.``, ``5 ft.``, ``1-gal.``, ``(6-Pack)``, ``18-Volt``, ...), a model-number-like
   token (``TH083``), a droppable tail (a trailing ``(...)`` or ``with ...`` clause) and a
   3-level category path from a fixed keyword -> path table (~220 Home Depot keywords such as
   faucet -> Bath > Faucets > Bathroom Sink Faucets, microwave -> Appliances > Microwaves >
   Over-the-Range; the keyword furthest right in the title's first clause wins, as the product
   noun ends it). Online Retail titles go under ``["Home & Gifts", ...]`` by their own table;
   no match gives a generic path (about a fifth of the Home Depot titles).
3. Each generated product picks a base uniformly at random and applies a random mix of edits,
   at least one of which always applies: brand swap (to another brand seen in the same
   category, frequency-weighted), size variant (a nearby value of the same unit), colour/finish
   variant (same family: metal finish, colour, wood tone, gift-shop pattern; frequency-weighted
   by the real titles), model number (shape-preserving re-randomisation of an existing one, or
   an added ``Model # KT-4821B``), an attribute phrase (``Heavy-Duty``, ``with Soft-Close``,
   ``(6-Pack)``, ``in Brushed Nickel``, ...) or dropping the droppable tail. The edits are
   roughly length-neutral on their own; a feedback rule (while the running mean of generated
   title lengths exceeds the real mean, tail drops get likelier and additions rarer) keeps the
   mean title length in words on the real one at every N (both are printed in the summary).
   Category is the base's; price is the base's times a random factor; a short templated
   description is added to about half of the generated products; popularity is heavy-tailed
   (Pareto), as for the real products.
4. Generated titles are unique among themselves and distinct from every real title: a 64-bit
   BLAKE2b digest of each title is kept in a set; a clash is retried (up to 6 times) with a
   fresh base from the same source (Home Depot or Online Retail, so the mix of the two stays
   that of the real catalog) and fresh edits, then a counter-based model number is appended.
   Ids are ``g0000001``, ``g0000002``, ... (more digits past 9,999,999).

Determinism
-----------
For the same N, seed and input files the output is byte-identical, whatever PYTHONHASHSEED:
all randomness comes from one ``random.Random(seed)`` consumed in a fixed order; inputs are
read in file order; random choices are made from lists built in file order; sets are only
used for membership tests and never iterated, and dicts only in insertion order, so Python's
per-process string hash randomisation cannot leak in; the dedupe set holds integers derived
from BLAKE2b, not Python's ``hash``; JSON keys are written in a fixed order (id, title,
description, category, brand, price, attributes, popularity) by one fixed encoder. (The
output for a given seed may change when this script's tables change.)

Output
------
JSONL, one product per line, in the project's catalog format::

    {"id": "g0000001", "title": "...", "description": "...", "category": ["Bath", "Faucets",
     "Shower Faucets"], "brand": "MOEN", "price": 149.97, "attributes": {"color": "Chrome",
     "size": "1/2 in."}, "popularity": 3}

``description``, ``brand``, ``price`` and ``attributes`` are present only when known. The file
is written to a temporary file in the output's folder and renamed into place at the end, so an
interrupted run never leaves a complete-looking partial file. Products are streamed to disk;
memory holds the parsed base titles plus one 64-bit title digest per product for dedupe
(about 190 MB peak for 1M products). A one-line summary (products, seconds, mean title words
of the real vs the generated titles, clashes resolved by a counter) goes to stderr.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from random import Random

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets"
BENCH_DIR = REPO_ROOT / "bench-data"

HD_FILE = ("homedepot", "catalog.jsonl")
RETAIL_FILE = ("online_retail", "catalog.jsonl")

# ---------------------------------------------------------------------------------------------
# Category table: (keyword, path, (price low, price high)). The first keyword found in a title
# (as a word or word pair, plural "s" ignored) gives the path, so specific keywords come first.
# ---------------------------------------------------------------------------------------------
HD_CATEGORIES = [
    ("shower head", ("Bath", "Showers", "Shower Heads"), (15, 250)),
    ("showerhead", ("Bath", "Showers", "Shower Heads"), (15, 250)),
    ("shower faucet", ("Bath", "Faucets", "Shower Faucets"), (60, 450)),
    ("tub faucet", ("Bath", "Faucets", "Bathtub Faucets"), (60, 450)),
    ("kitchen faucet", ("Kitchen", "Kitchen Faucets", "Pull-Down Faucets"), (70, 500)),
    ("faucet", ("Bath", "Faucets", "Bathroom Sink Faucets"), (40, 400)),
    ("vanity light", ("Lighting", "Bathroom Lighting", "Vanity Lights"), (30, 300)),
    ("ceiling fan", ("Lighting", "Ceiling Fans", "Indoor Ceiling Fans"), (50, 600)),
    ("light bulb", ("Lighting", "Light Bulbs", "LED Bulbs"), (3, 40)),
    ("bulb", ("Lighting", "Light Bulbs", "LED Bulbs"), (3, 40)),
    ("chandelier", ("Lighting", "Chandeliers", "Crystal Chandeliers"), (80, 900)),
    ("pendant", ("Lighting", "Pendant Lights", "Mini Pendants"), (30, 400)),
    ("flush mount", ("Lighting", "Ceiling Lights", "Flush Mount Lights"), (20, 250)),
    ("recessed", ("Lighting", "Recessed Lighting", "Recessed Trims"), (8, 120)),
    ("lantern", ("Lighting", "Outdoor Lighting", "Wall Lanterns"), (25, 300)),
    ("landscape", ("Lighting", "Outdoor Lighting", "Landscape Lighting"), (15, 200)),
    ("shower door", ("Bath", "Showers", "Shower Doors"), (150, 1200)),
    ("shower", ("Bath", "Showers", "Shower Systems"), (40, 800)),
    ("tub", ("Bath", "Bathtubs", "Alcove Bathtubs"), (250, 2500)),
    ("medicine cabinet", ("Bath", "Bathroom Cabinets", "Medicine Cabinets"), (60, 500)),
    ("grab bar", ("Bath", "Bathroom Accessories", "Grab Bars"), (15, 80)),
    ("toilet", ("Bath", "Toilets", "Two-Piece Toilets"), (90, 700)),
    ("vanity", ("Bath", "Bathroom Vanities", "Vanities with Tops"), (150, 1500)),
    ("bathtub", ("Bath", "Bathtubs", "Alcove Bathtubs"), (250, 2500)),
    ("mirror", ("Bath", "Bathroom Mirrors", "Wall Mirrors"), (40, 400)),
    ("towel bar", ("Bath", "Bathroom Accessories", "Towel Bars"), (15, 90)),
    ("microwave", ("Appliances", "Microwaves", "Over-the-Range"), (90, 700)),
    ("refrigerator", ("Appliances", "Refrigerators", "French Door Refrigerators"), (600, 3500)),
    ("dishwasher", ("Appliances", "Dishwashers", "Built-In Dishwashers"), (350, 1400)),
    ("range hood", ("Appliances", "Range Hoods", "Wall Mount Range Hoods"), (90, 1200)),
    ("front load washer", ("Appliances", "Washers & Dryers", "Front Load Washers"), (500, 1600)),
    ("top load washer", ("Appliances", "Washers & Dryers", "Top Load Washers"), (400, 1200)),
    ("dryer", ("Appliances", "Washers & Dryers", "Electric Dryers"), (400, 1400)),
    ("pressure washer", ("Outdoors", "Outdoor Power Equipment", "Pressure Washers"), (120, 900)),
    ("water heater", ("Plumbing", "Water Heaters", "Tank Water Heaters"), (300, 1800)),
    ("gas range", ("Appliances", "Ranges", "Gas Ranges"), (500, 2800)),
    ("range", ("Appliances", "Ranges", "Electric Ranges"), (450, 2500)),
    ("cooktop", ("Appliances", "Cooktops", "Electric Cooktops"), (300, 1800)),
    ("sink", ("Kitchen", "Kitchen Sinks", "Undermount Sinks"), (80, 800)),
    ("under cabinet", ("Lighting", "Under Cabinet Lighting", "LED Under Cabinet Lights"), (15, 120)),
    ("cabinet", ("Kitchen", "Kitchen Cabinets", "Base Cabinets"), (60, 700)),
    ("countertop", ("Kitchen", "Countertops", "Laminate Countertops"), (60, 600)),
    ("spray paint", ("Paint", "Spray Paint", "Enamel Spray Paint"), (4, 15)),
    ("primer", ("Paint", "Primers", "Interior Primers"), (12, 60)),
    ("stain", ("Paint", "Exterior Stain", "Deck Stain"), (15, 60)),
    ("exterior paint", ("Paint", "Exterior Paint", "Exterior House Paint"), (20, 70)),
    ("paint", ("Paint", "Interior Paint", "Wall Paint"), (15, 60)),
    ("wallpaper", ("Paint", "Wallpaper", "Peel and Stick Wallpaper"), (20, 80)),
    ("caulk", ("Paint", "Caulk & Sealants", "Silicone Caulk"), (4, 15)),
    ("sealant", ("Paint", "Caulk & Sealants", "Sealants"), (5, 30)),
    ("adhesive", ("Paint", "Caulk & Sealants", "Construction Adhesive"), (4, 25)),
    ("drill", ("Tools", "Power Tools", "Drills"), (40, 300)),
    ("saw", ("Tools", "Power Tools", "Saws"), (60, 600)),
    ("blade", ("Tools", "Power Tool Accessories", "Saw Blades"), (10, 80)),
    ("bit", ("Tools", "Power Tool Accessories", "Drill Bits"), (5, 60)),
    ("battery", ("Tools", "Power Tool Batteries", "Lithium-Ion Batteries"), (30, 200)),
    ("wrench", ("Tools", "Hand Tools", "Wrenches"), (10, 120)),
    ("plier", ("Tools", "Hand Tools", "Pliers"), (10, 60)),
    ("hammer", ("Tools", "Hand Tools", "Hammers"), (10, 60)),
    ("screwdriver", ("Tools", "Hand Tools", "Screwdrivers"), (6, 50)),
    ("ladder", ("Tools", "Ladders", "Extension Ladders"), (60, 500)),
    ("impact driver", ("Tools", "Power Tools", "Impact Drivers"), (60, 300)),
    ("tool box", ("Tools", "Tool Storage", "Tool Boxes"), (20, 200)),
    ("tool bag", ("Tools", "Tool Storage", "Tool Bags"), (20, 120)),
    ("tool", ("Tools", "Hand Tools", "Specialty Tools"), (10, 150)),
    ("screw", ("Hardware", "Fasteners", "Screws"), (3, 30)),
    ("nail", ("Hardware", "Fasteners", "Nails"), (3, 40)),
    ("bolt", ("Hardware", "Fasteners", "Bolts"), (1, 20)),
    ("anchor", ("Hardware", "Fasteners", "Anchors"), (2, 20)),
    ("washer", ("Hardware", "Fasteners", "Washers"), (1, 15)),
    ("hinge", ("Hardware", "Door Hardware", "Hinges"), (3, 30)),
    ("knob", ("Hardware", "Cabinet Hardware", "Cabinet Knobs"), (2, 40)),
    ("pull", ("Hardware", "Cabinet Hardware", "Cabinet Pulls"), (2, 40)),
    ("lock", ("Hardware", "Door Hardware", "Door Locks"), (15, 250)),
    ("patio door", ("Doors & Windows", "Patio Doors", "Sliding Patio Doors"), (300, 2500)),
    ("fold door", ("Doors & Windows", "Interior Doors", "Bifold Doors"), (60, 400)),
    ("interior door", ("Doors & Windows", "Interior Doors", "Prehung Doors"), (60, 400)),
    ("garage door", ("Doors & Windows", "Garage Doors", "Garage Door Parts"), (20, 300)),
    ("opener", ("Doors & Windows", "Garage Doors", "Garage Door Openers"), (150, 400)),
    ("front door", ("Doors & Windows", "Exterior Doors", "Front Doors"), (200, 1500)),
    ("door", ("Doors & Windows", "Doors", "Doors & Door Parts"), (20, 800)),
    ("window", ("Doors & Windows", "Windows", "Double Hung Windows"), (120, 900)),
    ("weatherstrip", ("Doors & Windows", "Weatherstripping", "Door Seals"), (4, 30)),
    ("blind", ("Window Treatments", "Blinds", "Cordless Blinds"), (15, 150)),
    ("shade", ("Window Treatments", "Shades", "Roller Shades"), (20, 200)),
    ("curtain", ("Window Treatments", "Curtains & Drapes", "Curtain Panels"), (15, 120)),
    ("tile", ("Flooring", "Tile", "Porcelain Tile"), (1, 60)),
    ("laminate", ("Flooring", "Laminate Flooring", "Laminate Planks"), (20, 90)),
    ("vinyl plank", ("Flooring", "Vinyl Flooring", "Luxury Vinyl Planks"), (20, 90)),
    ("vinyl tile", ("Flooring", "Vinyl Flooring", "Vinyl Tile"), (20, 90)),
    ("vinyl flooring", ("Flooring", "Vinyl Flooring", "Vinyl Sheet Flooring"), (20, 90)),
    ("sheet flooring", ("Flooring", "Vinyl Flooring", "Vinyl Sheet Flooring"), (20, 90)),
    ("hardwood flooring", ("Flooring", "Hardwood Flooring", "Engineered Hardwood"), (30, 120)),
    ("laminate flooring", ("Flooring", "Laminate Flooring", "Laminate Planks"), (20, 90)),
    ("carpet", ("Flooring", "Carpet", "Carpet Samples"), (2, 60)),
    ("rug", ("Flooring", "Rugs", "Area Rugs"), (30, 600)),
    ("moulding", ("Building Materials", "Moulding & Millwork", "Trim Moulding"), (5, 60)),
    ("molding", ("Building Materials", "Moulding & Millwork", "Trim Moulding"), (5, 60)),
    ("lumber", ("Building Materials", "Lumber & Composites", "Dimensional Lumber"), (3, 60)),
    ("plywood", ("Building Materials", "Lumber & Composites", "Plywood"), (15, 80)),
    ("drywall", ("Building Materials", "Drywall", "Drywall Panels"), (8, 40)),
    ("concrete", ("Building Materials", "Concrete, Cement & Masonry", "Concrete Mix"), (4, 40)),
    ("insulation", ("Building Materials", "Insulation", "Batt Insulation"), (10, 80)),
    ("gutter", ("Building Materials", "Roofing", "Gutters"), (5, 60)),
    ("shingle", ("Building Materials", "Roofing", "Roof Shingles"), (20, 120)),
    ("fence", ("Lumber & Composites", "Fencing", "Fence Panels"), (20, 200)),
    ("drain", ("Plumbing", "Drains", "Floor Drains"), (5, 80)),
    ("pump", ("Plumbing", "Pumps", "Sump Pumps"), (60, 400)),
    ("elbow", ("Plumbing", "Pipe & Fittings", "Fittings"), (1, 25)),
    ("tee", ("Plumbing", "Pipe & Fittings", "Fittings"), (1, 25)),
    ("coupling", ("Plumbing", "Pipe & Fittings", "Fittings"), (1, 25)),
    ("adapter", ("Plumbing", "Pipe & Fittings", "Adapters"), (1, 25)),
    ("pipe", ("Plumbing", "Pipe & Fittings", "PVC Pipe"), (3, 60)),
    ("valve", ("Plumbing", "Valves", "Shut-Off Valves"), (6, 80)),
    ("fitting", ("Plumbing", "Pipe & Fittings", "Fittings"), (2, 30)),
    ("wire", ("Electrical", "Wire", "Building Wire"), (10, 200)),
    ("cable", ("Electrical", "Wire", "Cables"), (8, 120)),
    ("extension cord", ("Electrical", "Extension Cords", "Indoor Extension Cords"), (6, 60)),
    ("cord", ("Electrical", "Extension Cords", "Power Cords"), (6, 60)),
    ("wall plate", ("Electrical", "Wiring Devices", "Wall Plates"), (1, 20)),
    ("junction box", ("Electrical", "Boxes & Brackets", "Junction Boxes"), (1, 20)),
    ("plug", ("Electrical", "Wiring Devices", "Plugs & Connectors"), (2, 20)),
    ("connector", ("Electrical", "Wiring Devices", "Wire Connectors"), (2, 20)),
    ("outlet", ("Electrical", "Wiring Devices", "Outlets"), (2, 40)),
    ("switch", ("Electrical", "Wiring Devices", "Light Switches"), (3, 60)),
    ("breaker", ("Electrical", "Power Distribution", "Circuit Breakers"), (8, 120)),
    ("conduit", ("Electrical", "Conduit & Fittings", "PVC Conduit"), (2, 40)),
    ("camera", ("Electrical", "Home Security", "Security Cameras"), (40, 400)),
    ("smoke", ("Electrical", "Home Safety", "Smoke Detectors"), (10, 60)),
    ("light", ("Lighting", "Ceiling Lights", "Light Fixtures"), (20, 300)),
    ("lamp", ("Lighting", "Lamps", "Table Lamps"), (20, 200)),
    ("generator", ("Outdoors", "Outdoor Power Equipment", "Generators"), (300, 2500)),
    ("killer", ("Outdoors", "Garden Center", "Pest Control"), (5, 40)),
    ("cushion", ("Outdoors", "Patio Furniture", "Outdoor Cushions"), (20, 150)),
    ("cooler", ("Outdoors", "Coolers", "Ice Chests"), (20, 300)),
    ("pool", ("Outdoors", "Pool Supplies", "Pool Equipment"), (15, 600)),
    ("solar", ("Lighting", "Outdoor Lighting", "Solar Lights"), (10, 120)),
    ("soil", ("Outdoors", "Garden Center", "Soil & Mulch"), (4, 20)),
    ("mulch", ("Outdoors", "Garden Center", "Soil & Mulch"), (3, 15)),
    ("seed", ("Outdoors", "Garden Center", "Grass Seed"), (10, 60)),
    ("plant", ("Outdoors", "Garden Center", "Plants"), (8, 60)),
    ("grill", ("Outdoors", "Grills", "Gas Grills"), (100, 1200)),
    ("mower", ("Outdoors", "Outdoor Power Equipment", "Lawn Mowers"), (150, 2500)),
    ("trimmer", ("Outdoors", "Outdoor Power Equipment", "String Trimmers"), (60, 350)),
    ("blower", ("Outdoors", "Outdoor Power Equipment", "Leaf Blowers"), (60, 400)),
    ("hose", ("Outdoors", "Garden Center", "Garden Hoses"), (15, 90)),
    ("planter", ("Outdoors", "Garden Center", "Pots & Planters"), (10, 150)),
    ("patio", ("Outdoors", "Patio Furniture", "Patio Chairs"), (60, 1200)),
    ("fertilizer", ("Outdoors", "Garden Center", "Lawn Care"), (10, 60)),
    ("fireplace", ("Heating & Cooling", "Fireplaces", "Electric Fireplaces"), (150, 1500)),
    ("duct", ("Heating & Cooling", "Ducting & Venting", "Ducts"), (5, 60)),
    ("vent", ("Heating & Cooling", "Ducting & Venting", "Vents"), (5, 60)),
    ("thermostat", ("Heating & Cooling", "Thermostats", "Programmable Thermostats"), (25, 250)),
    ("air conditioner", ("Heating & Cooling", "Air Conditioners", "Window Air Conditioners"), (150, 700)),
    ("heater", ("Heating & Cooling", "Heaters", "Space Heaters"), (30, 300)),
    ("filter", ("Heating & Cooling", "Air Filters", "Furnace Filters"), (5, 60)),
    ("fan", ("Heating & Cooling", "Fans", "Portable Fans"), (20, 200)),
    ("register", ("Heating & Cooling", "Ducting & Venting", "Vent Registers"), (4, 40)),
    ("trash can", ("Storage & Organization", "Trash Cans", "Outdoor Trash Cans"), (15, 150)),
    ("hanger", ("Storage & Organization", "Closet Organizers", "Hangers"), (5, 40)),
    ("rack", ("Storage & Organization", "Garage Storage", "Racks"), (15, 200)),
    ("bracket", ("Hardware", "Shelf Hardware", "Shelf Brackets"), (2, 30)),
    ("hook", ("Hardware", "Hooks", "Utility Hooks"), (2, 25)),
    ("shelf", ("Storage & Organization", "Closet Organizers", "Wall Shelves"), (10, 150)),
    ("shelving", ("Storage & Organization", "Garage Storage", "Shelving Units"), (30, 300)),
    ("closet", ("Storage & Organization", "Closet Organizers", "Closet Systems"), (20, 400)),
    ("storage", ("Storage & Organization", "Storage Containers", "Storage Bins"), (10, 200)),
    ("hardwood", ("Flooring", "Hardwood Flooring", "Solid Hardwood"), (30, 120)),
    ("flooring", ("Flooring", "Flooring Planks", "Engineered Flooring"), (20, 90)),
    ("grout", ("Flooring", "Tile", "Grout"), (8, 40)),
    ("stair", ("Building Materials", "Moulding & Millwork", "Stair Parts"), (10, 120)),
    ("threshold", ("Building Materials", "Moulding & Millwork", "Thresholds"), (8, 60)),
    ("decking", ("Lumber & Composites", "Decking", "Composite Decking"), (15, 90)),
    ("board", ("Building Materials", "Lumber & Composites", "Boards"), (5, 60)),
    ("post", ("Lumber & Composites", "Fencing", "Fence Posts"), (8, 60)),
    ("gate", ("Lumber & Composites", "Fencing", "Fence Gates"), (40, 300)),
    ("screen", ("Doors & Windows", "Screens", "Window Screens"), (15, 120)),
    ("rod", ("Window Treatments", "Curtain Rods", "Decorative Rods"), (10, 80)),
    ("sanding", ("Tools", "Power Tool Accessories", "Sandpaper"), (5, 30)),
    ("socket", ("Tools", "Hand Tools", "Sockets"), (5, 80)),
    ("roller", ("Paint", "Paint Applicators", "Paint Rollers"), (4, 25)),
    ("brush", ("Paint", "Paint Applicators", "Paint Brushes"), (4, 25)),
    ("tape measure", ("Tools", "Hand Tools", "Tape Measures"), (8, 40)),
    ("tape", ("Paint", "Paint Applicators", "Painter's Tape"), (4, 15)),
    ("cleaner", ("Cleaning", "Cleaning Supplies", "Household Cleaners"), (4, 25)),
    ("vacuum", ("Cleaning", "Vacuums", "Wet Dry Vacuums"), (50, 400)),
    ("glove", ("Workwear", "Safety Gear", "Work Gloves"), (5, 30)),
    ("chair", ("Furniture", "Living Room Furniture", "Accent Chairs"), (60, 600)),
    ("table", ("Furniture", "Living Room Furniture", "Tables"), (60, 600)),
    ("bed", ("Furniture", "Bedroom Furniture", "Beds & Headboards"), (150, 1200)),
    ("furniture", ("Furniture", "Living Room Furniture", "Furniture Sets"), (60, 900)),
    ("canvas", ("Home Decor", "Wall Decor", "Canvas Art"), (20, 200)),
    ("clock", ("Home Decor", "Wall Decor", "Wall Clocks"), (20, 150)),
    ("grinder", ("Tools", "Power Tools", "Angle Grinders"), (40, 250)),
    ("tool chest", ("Tools", "Tool Storage", "Tool Chests"), (80, 900)),
    ("water filter", ("Kitchen", "Water Filtration", "Refrigerator Water Filters"), (20, 60)),
    ("shovel", ("Outdoors", "Garden Tools", "Shovels"), (15, 60)),
    ("boot", ("Workwear", "Footwear", "Work Boots"), (40, 200)),
    ("railing", ("Lumber & Composites", "Deck Railings", "Railing Kits"), (20, 200)),
    ("baluster", ("Lumber & Composites", "Deck Railings", "Balusters"), (10, 80)),
    ("canopy", ("Outdoors", "Patio", "Canopies & Gazebos"), (80, 800)),
    ("downrod", ("Lighting", "Ceiling Fans", "Ceiling Fan Accessories"), (10, 50)),
    ("oven", ("Appliances", "Wall Ovens", "Single Wall Ovens"), (900, 3000)),
    ("inflatable", ("Holiday Decorations", "Christmas Decorations", "Inflatables"), (30, 150)),
    ("cement", ("Building Materials", "Concrete, Cement & Masonry", "Cement"), (8, 40)),
    ("wall block", ("Building Materials", "Landscaping", "Retaining Wall Blocks"), (2, 10)),
    ("skylight", ("Doors & Windows", "Windows", "Skylights"), (150, 900)),
    ("vacuum cleaner", ("Cleaning", "Vacuums", "Robot Vacuums"), (100, 600)),
    ("bag", ("Storage & Organization", "Storage Containers", "Storage Bags"), (5, 40)),
    ("tree", ("Outdoors", "Garden Center", "Trees & Shrubs"), (20, 200)),
    ("bird", ("Outdoors", "Garden Center", "Bird Feeders"), (10, 80)),
    ("cart", ("Storage & Organization", "Garage Storage", "Utility Carts"), (40, 300)),
    ("sign", ("Hardware", "Mailboxes & Signs", "Address Signs"), (5, 40)),
    ("lever", ("Hardware", "Door Hardware", "Door Levers"), (15, 120)),
    ("led", ("Lighting", "Ceiling Lights", "LED Fixtures"), (15, 200)),
    ("christmas", ("Holiday Decorations", "Christmas Decorations", "Christmas Trees"), (15, 400)),
    ("holiday", ("Holiday Decorations", "Christmas Decorations", "Holiday Lighting"), (10, 200)),
    ("pet", ("Pet Supplies", "Dog Supplies", "Kennels & Crates"), (20, 400)),
    ("kennel", ("Pet Supplies", "Dog Supplies", "Kennels & Crates"), (20, 400)),
    ("mailbox", ("Outdoors", "Mailboxes", "Post Mount Mailboxes"), (20, 200)),
]
HD_FALLBACK = (("Home Improvement", "More Departments", "General Merchandise"), (5, 150))

RETAIL_CATEGORIES = [
    ("christmas", ("Home & Gifts", "Seasonal", "Christmas Decorations"), (0.5, 8)),
    ("easter", ("Home & Gifts", "Seasonal", "Easter Decorations"), (0.5, 6)),
    ("mug", ("Home & Gifts", "Kitchen & Dining", "Mugs & Cups"), (0.8, 6)),
    ("cup", ("Home & Gifts", "Kitchen & Dining", "Mugs & Cups"), (0.5, 5)),
    ("plate", ("Home & Gifts", "Kitchen & Dining", "Plates & Bowls"), (0.5, 6)),
    ("bowl", ("Home & Gifts", "Kitchen & Dining", "Plates & Bowls"), (0.5, 6)),
    ("cake", ("Home & Gifts", "Kitchen & Dining", "Baking"), (0.5, 8)),
    ("lunch", ("Home & Gifts", "Kitchen & Dining", "Lunch Boxes & Bags"), (1, 6)),
    ("bag", ("Home & Gifts", "Bags", "Shopping Bags"), (0.5, 5)),
    ("candle", ("Home & Gifts", "Candles & Holders", "Candles"), (0.3, 6)),
    ("holder", ("Home & Gifts", "Candles & Holders", "Holders"), (0.8, 8)),
    ("necklace", ("Home & Gifts", "Jewellery", "Necklaces"), (1, 10)),
    ("bracelet", ("Home & Gifts", "Jewellery", "Bracelets"), (1, 10)),
    ("earring", ("Home & Gifts", "Jewellery", "Earrings"), (1, 8)),
    ("card", ("Home & Gifts", "Stationery & Gift Wrap", "Greeting Cards"), (0.2, 3)),
    ("wrap", ("Home & Gifts", "Stationery & Gift Wrap", "Wrapping Paper"), (0.3, 3)),
    ("notebook", ("Home & Gifts", "Stationery & Gift Wrap", "Notebooks"), (0.5, 4)),
    ("sign", ("Home & Gifts", "Wall Decor", "Signs"), (0.8, 6)),
    ("frame", ("Home & Gifts", "Wall Decor", "Photo Frames"), (1, 8)),
    ("clock", ("Home & Gifts", "Wall Decor", "Clocks"), (2, 12)),
    ("cushion", ("Home & Gifts", "Textiles", "Cushions & Covers"), (1, 8)),
    ("towel", ("Home & Gifts", "Textiles", "Tea Towels"), (0.8, 5)),
    ("apron", ("Home & Gifts", "Textiles", "Aprons"), (2, 8)),
    ("box", ("Home & Gifts", "Storage", "Boxes & Tins"), (0.8, 10)),
    ("tin", ("Home & Gifts", "Storage", "Boxes & Tins"), (0.8, 8)),
    ("jar", ("Home & Gifts", "Storage", "Jars"), (0.8, 6)),
    ("light", ("Home & Gifts", "Lighting", "Decorative Lights"), (1, 10)),
    ("lantern", ("Home & Gifts", "Lighting", "Lanterns"), (1, 10)),
    ("decoration", ("Home & Gifts", "Decorations", "Hanging Decorations"), (0.3, 5)),
    ("garden", ("Home & Gifts", "Garden", "Garden Decor"), (1, 10)),
    ("toy", ("Home & Gifts", "Toys & Games", "Toys"), (0.3, 8)),
    ("game", ("Home & Gifts", "Toys & Games", "Games"), (0.5, 8)),
    ("doll", ("Home & Gifts", "Toys & Games", "Dolls"), (1, 10)),
    ("ring", ("Home & Gifts", "Jewellery", "Rings"), (1, 8)),
    ("hair", ("Home & Gifts", "Accessories", "Hair Accessories"), (0.5, 4)),
    ("purse", ("Home & Gifts", "Bags", "Purses"), (1, 6)),
    ("glass", ("Home & Gifts", "Kitchen & Dining", "Glassware"), (0.8, 6)),
    ("bottle", ("Home & Gifts", "Kitchen & Dining", "Bottles"), (1, 6)),
    ("tray", ("Home & Gifts", "Kitchen & Dining", "Trays"), (1, 8)),
    ("cutlery", ("Home & Gifts", "Kitchen & Dining", "Cutlery"), (1, 8)),
    ("dish", ("Home & Gifts", "Kitchen & Dining", "Dishes"), (0.8, 6)),
    ("pantry", ("Home & Gifts", "Kitchen & Dining", "Pantry"), (0.8, 6)),
    ("mirror", ("Home & Gifts", "Wall Decor", "Mirrors"), (1, 10)),
    ("art", ("Home & Gifts", "Wall Decor", "Wall Art"), (1, 10)),
    ("hook", ("Home & Gifts", "Home Hardware", "Hooks & Knobs"), (0.5, 5)),
    ("hanger", ("Home & Gifts", "Home Hardware", "Hooks & Knobs"), (0.5, 5)),
    ("knob", ("Home & Gifts", "Home Hardware", "Hooks & Knobs"), (0.5, 5)),
    ("rack", ("Home & Gifts", "Home Hardware", "Racks"), (1, 10)),
    ("garland", ("Home & Gifts", "Decorations", "Garlands & Bunting"), (0.5, 5)),
    ("bunting", ("Home & Gifts", "Decorations", "Garlands & Bunting"), (0.5, 5)),
    ("doormat", ("Home & Gifts", "Textiles", "Doormats"), (4, 10)),
    ("paper", ("Home & Gifts", "Stationery & Gift Wrap", "Paper Goods"), (0.3, 3)),
    ("pencil", ("Home & Gifts", "Stationery & Gift Wrap", "Pens & Pencils"), (0.3, 3)),
    ("pen", ("Home & Gifts", "Stationery & Gift Wrap", "Pens & Pencils"), (0.3, 3)),
    ("sticker", ("Home & Gifts", "Stationery & Gift Wrap", "Stickers"), (0.3, 3)),
    ("magnet", ("Home & Gifts", "Stationery & Gift Wrap", "Magnets"), (0.3, 3)),
    ("ribbon", ("Home & Gifts", "Stationery & Gift Wrap", "Ribbons"), (0.5, 4)),
    ("tape", ("Home & Gifts", "Stationery & Gift Wrap", "Tape"), (0.3, 3)),
    ("party", ("Home & Gifts", "Party Supplies", "Party Decorations"), (0.3, 5)),
    ("tissue", ("Home & Gifts", "Party Supplies", "Tissues"), (0.3, 3)),
    ("kit", ("Home & Gifts", "Crafts", "Craft Kits"), (1, 8)),
    ("set", ("Home & Gifts", "Gifts", "Gift Sets"), (1, 10)),
]
RETAIL_FALLBACK = (("Home & Gifts", "Gifts", "Giftware"), (0.5, 8))

# ---------------------------------------------------------------------------------------------
# Colour / finish families. A variant swaps a word for another of the same family.
# ---------------------------------------------------------------------------------------------
FINISH_FAMILIES = {
    "metal": [
        "Chrome", "Polished Chrome", "Brushed Nickel", "Satin Nickel", "Polished Nickel",
        "Oil Rubbed Bronze", "Venetian Bronze", "Antique Brass", "Polished Brass", "Satin Brass",
        "Stainless Steel", "Brushed Stainless", "Matte Black", "Champagne Bronze", "Aged Brass",
        "Pewter", "Bronze", "Brushed Bronze", "Black Stainless",
    ],
    "colour": [
        "White", "Black", "Gray", "Grey", "Brown", "Beige", "Biscuit", "Bisque", "Almond",
        "Ivory", "Red", "Blue", "Green", "Navy", "Silver", "Gold", "Tan", "Charcoal", "Cream",
        "Taupe", "Bone", "Pink", "Purple", "Yellow", "Orange", "Clear", "Bright White",
        "Arctic White", "Sage", "Mint Green", "Light Blue", "Dark Gray", "Burgundy",
    ],
    "wood": [
        "Espresso", "Cherry", "Oak", "Walnut", "Mahogany", "Maple", "Honey Oak",
        "Dark Walnut", "Antique White", "Driftwood", "Cognac", "Chestnut", "Teak", "Birch",
    ],
}
# Online Retail title words that name a pattern or theme; swapped among themselves.
PATTERNS = [
    "Retrospot", "Polkadot", "Paisley", "Spaceboy", "Gingham", "Strawberry", "Union Jack",
    "Woodland", "Regency", "Baroque", "Vintage", "Floral", "Stripes", "Hearts", "Butterfly",
    "Daisy", "Owl", "Bird", "Dolly Girl", "Skull", "Circus Parade", "Alphabet", "Cherry",
]

# ---------------------------------------------------------------------------------------------
# Size units: regex (value group 1) and a ladder of realistic values. A size variant moves one
# to three rungs up or down the ladder (or picks any rung when the value is not on it).
# ---------------------------------------------------------------------------------------------
NUM = r"\d+(?:-\d+/\d+|\.\d+|/\d+)?"
SIZE_UNITS = [
    ("cuft", r"(?<![\w./,-])(\d+(?:\.\d+)?) cu\. ft\.", ["1.1", "1.6", "1.9", "2.0", "2.2", "3.5", "4.2", "4.5", "5.0", "5.3", "7.3", "20", "22", "25", "27"]),
    ("sqft", r"(?<![\w./,-])(\d+(?:\.\d+)?) sq\. ft\.", ["10", "15", "20", "22", "24", "27", "30", "40", "50", "100"]),
    ("in", r"(?<![\w./,-])(" + NUM + r") in\.", ["1/8", "1/4", "3/8", "1/2", "5/8", "3/4", "1", "1-1/4", "1-1/2", "2", "2-1/2", "3", "4", "5", "6", "8", "10", "12", "14", "16", "18", "20", "24", "30", "36", "42", "48", "60", "72", "96"]),
    ("ft", r"(?<![\w./,-])(" + NUM + r") ft\.", ["2", "3", "4", "5", "6", "8", "10", "12", "16", "20", "25", "50", "75", "100", "250", "500"]),
    ("gal", r"(?<![\w./,-])(" + NUM + r")[- ][Gg]al\.", ["1/2", "1", "2", "2.5", "3.5", "5", "10", "40", "50"]),
    ("oz", r"(?<![\w./,-])(" + NUM + r") (?:fl\. )?oz\.", ["1", "2", "3", "4", "6", "8", "10", "11", "12", "16", "20", "28", "32"]),
    ("lb", r"(?<![\w./,-])(" + NUM + r") lb\.", ["1", "2", "5", "10", "20", "25", "40", "50", "60", "80"]),
    ("qt", r"(?<![\w./,-])(" + NUM + r") [Qq]t\.", ["1", "2", "4", "5", "6", "8"]),
    ("pack", r"(?<![\w./,-])(\d+)-Pack\b", ["2", "3", "4", "5", "6", "8", "10", "12", "20", "24", "25", "50", "100"]),
    ("pack", r"\bPack of (\d+)\b", ["2", "3", "4", "5", "6", "8", "10", "12", "20", "24", "25", "50", "100"]),
    ("watt", r"(?<![\w./,-])(\d+)-Watt\b", ["15", "25", "40", "50", "60", "75", "100", "150", "250", "300", "500", "1000", "1500"]),
    ("volt", r"(?<![\w./,-])(\d+(?:\.\d+)?)-Volt\b", ["4", "7.2", "12", "18", "20", "36", "40", "56", "60", "80", "120", "240"]),
    ("light", r"(?<![\w./,-])(\d+)-Light\b", ["1", "2", "3", "4", "5", "6", "8", "9", "12"]),
    ("gauge", r"(?<![\w./,-])(\d+)-Gauge\b", ["10", "12", "14", "16", "18", "20", "22", "24"]),
    ("set", r"\bSet (?:[Oo]f )?(\d+)\b", ["2", "3", "4", "5", "6", "8", "10", "12", "20"]),
    ("wordsize", r"\b(Small|Medium|Large|Jumbo|Mini|Extra Large)\b", ["Mini", "Small", "Medium", "Large", "Extra Large", "Jumbo"]),
]

# Attribute phrases: single words inserted after the brand, and tails appended, by top category.
PREFIX_PHRASES = ["Premium", "Heavy-Duty", "Pro-Series", "Designer", "Deluxe", "Commercial-Grade", "Compact", "Low-Profile", "Universal", "Classic"]
SUFFIX_PHRASES = {
    "Bath": ["with Soft-Close Seat", "with Pop-Up Drain", "WaterSense", "with Anti-Scald Valve"],
    "Kitchen": ["with Soft-Close Drawers", "with Sprayer", "Fingerprint Resistant", "with Drain Assembly"],
    "Appliances": ["Energy Star", "with Steam Clean", "Fingerprint Resistant", "with Sensor Cooking"],
    "Lighting": ["Dimmable", "with Remote Control", "Energy Star", "with Frosted Glass"],
    "Tools": ["(Tool Only)", "with Carrying Case", "Kit", "with LED Light"],
    "Hardware": ["(Contractor Pack)", "Zinc-Plated", "Rust Resistant", "with Mounting Screws"],
    "Paint": ["Low-VOC", "Mildew Resistant", "Quick Dry", "(Case of 6)"],
    "Outdoors": ["Weather Resistant", "with Cover", "Cordless", "UV Resistant"],
    "Home & Gifts": ["Gift Set", "Assorted", "Set of 3", "in Gift Box"],
}
SUFFIX_DEFAULT = ["Heavy Duty", "Commercial Grade", "Easy Install", "Weather Resistant"]

DESCRIPTION_SENTENCES = {
    "Bath": ["Designed for everyday use in busy family bathrooms.", "Corrosion-resistant construction holds up to daily moisture.", "Installs with standard fittings; hardware included."],
    "Kitchen": ["Built to handle daily cooking and cleanup.", "Stain-resistant surfaces wipe clean easily.", "Fits standard kitchen cut-outs."],
    "Appliances": ["Large capacity with easy-to-use controls.", "Quiet operation and an energy-efficient design.", "Backed by a limited manufacturer warranty."],
    "Lighting": ["Provides warm, even light for any room.", "Compatible with most standard dimmers.", "Easy installation with included mounting hardware."],
    "Tools": ["Ergonomic grip reduces fatigue on long jobs.", "Durable housing built for jobsite conditions.", "Backed by a limited lifetime warranty."],
    "Hardware": ["Made from durable, corrosion-resistant material.", "Ideal for repairs and new projects alike.", "Sold in convenient contractor quantities."],
    "Paint": ["Excellent coverage in one or two coats.", "Low odor and easy soap-and-water cleanup.", "Resists fading, peeling and mildew."],
    "Outdoors": ["Built to withstand sun, rain and frost.", "Assembles quickly with basic tools.", "Great for patios, decks and gardens."],
    "Home & Gifts": ["A charming gift for friends and family.", "Part of our best-selling collection.", "Lovely as a present or a treat for yourself."],
}
DESCRIPTION_DEFAULT = ["Quality construction for lasting performance.", "A dependable choice for home improvement projects.", "Easy to install and maintain."]

UPPER = "ABCDEFGHJKLMNPRSTUVWXYZ"
DIGITS = "0123456789"

MODEL_RE = re.compile(r"(?<![\w#-])#?([A-Z0-9]+(?:-[A-Z0-9]+)*)(?![\w-])")
BRAND_WORD_RE = re.compile(r"^(?:[A-Z][\w'&+.!-]*|\d+[A-Za-z][A-Za-z]*)$")
TOKEN_RE = re.compile(r"[a-z0-9]+")


def die(msg):
    print(f"gen-catalog: {msg}", file=sys.stderr)
    sys.exit(2)


def read_jsonl(path):
    """Yields the objects of a JSONL file, in file order."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def keyword_index(table):
    """Maps each keyword and its plural forms to the index of its first table entry."""
    index = {}
    for i, (kw, _path, _prices) in enumerate(table):
        forms = [kw, kw + "s"]
        if kw.endswith(("s", "x", "sh", "ch", "z")):
            forms.append(kw + "es")
        for form in forms:
            index.setdefault(form, i)
    return index


HEAD_SPLIT_RE = re.compile(r" (?:(?:with|for|w/|featuring|-|in(?= [A-Z]))(?= )|\()")


def categorise(title, table, index, fallback, rightmost=True):
    """The (path, price range) for a title from the keyword table, or the fallback.

    The product noun of a title usually ends its first clause ("... Extension Ladder with 300
    lb. Load Capacity", "... Vanity in White with Top"), so the keyword (word or word pair,
    plural forms included) found furthest right in the part before " with ", " for ", " in
    <Colour>", " - ", " (" wins; a word pair beats the single word it ends with, then table order
    breaks ties. Without a match there, the whole title is searched the same way. With
    rightmost=False (gift-shop titles, which often lead with the noun: "Glass Jar English
    Confectionery") the table order alone decides.
    """
    head = HEAD_SPLIT_RE.split(title, 1)[0]
    for text in (head, title):
        words = TOKEN_RE.findall(text.lower())
        best = None
        prev = None
        for pos, w in enumerate(words):
            if prev is not None:
                i = index.get(prev + " " + w)
                if i is not None:
                    key = (pos, 1, -i) if rightmost else (-i, 0, 0)
                    if best is None or key > best:
                        best = key
            i = index.get(w)
            if i is not None:
                key = (pos, 0, -i) if rightmost else (-i, 0, 0)
                if best is None or key > best:
                    best = key
            prev = w
        if best is not None:
            entry = table[-best[2]] if rightmost else table[-best[0]]
            return entry[1], entry[2]
        if text is title or head == title:
            break
    return fallback


BRAND_STOP = {"The", "A", "An", "New", "Pro", "Set", "Pack", "Replacement", "Universal"}


def mine_brands(titles):
    """Returns the brand (or None) of each title, learned from the leading capitalised words.

    A 1-3 word prefix is a brand when it starts at least 4 titles and occurs at the start at
    least twice as often as later in titles (so "White" or "Commercial" alone are not brands,
    but "Commercial Electric" is). It is extended by the next word when most titles with the
    prefix share it ("Hampton" -> "Hampton Bay"), or when the next word almost only occurs
    there and starts at least a tenth of them ("American" -> "American Imaginations").
    """
    prefix_count = Counter()
    word_count = Counter()
    split = []
    for t in titles:
        words = t.split()
        word_count.update(words)
        lead = []
        for w in words[:3]:
            if not BRAND_WORD_RE.match(w):
                break
            lead.append(w)
        split.append((words, len(lead)))
        for k in range(1, len(lead) + 1):
            prefix_count[" ".join(words[:k])] += 1
    # How often each candidate prefix occurs later in a title (a descriptor, not a brand):
    # single words from the word counts, word pairs and triples by one scan.
    first_count = Counter(words[0] for words, _ in split if words)
    mid_count = Counter()
    multi_first = {p.split(" ", 1)[0] for p in prefix_count if " " in p}
    for words, _ in split:
        n = len(words)
        for i in range(1, n - 1):
            if words[i] in multi_first:
                for k in (2, 3):
                    if i + k <= n:
                        phrase = " ".join(words[i:i + k])
                        if phrase in prefix_count:
                            mid_count[phrase] += 1
    for w in first_count:
        mid_count[w] = word_count[w] - first_count[w]

    def brand_of(words, nlead):
        k = 1
        while k <= nlead:
            p = " ".join(words[:k])
            if prefix_count[p] >= 4 and mid_count[p] * 2 <= prefix_count[p]:
                break
            k += 1
        else:
            return None
        while k < nlead:
            p = " ".join(words[:k])
            longer = p + " " + words[k]
            n = prefix_count[longer]
            if n >= 4 and (n * 2 >= prefix_count[p]
                           or (n * 10 >= prefix_count[p] and n * 5 >= word_count[words[k]] * 4)):
                k += 1
            else:
                break
        if k >= len(words) or (k == 1 and words[0] in BRAND_STOP):
            return None
        return " ".join(words[:k])

    return [brand_of(words, n) for words, n in split]


class Base:
    __slots__ = ("title", "retail", "brand", "brand_end", "finishes", "sizes", "model", "cut",
                 "path", "top", "price", "nwords")


def build_finish_re():
    names = []
    fam_of = {}
    for fam in sorted(FINISH_FAMILIES):
        for name in FINISH_FAMILIES[fam]:
            if name not in fam_of:
                fam_of[name] = fam
                names.append(name)
    for name in PATTERNS:
        if name not in fam_of:
            fam_of[name] = "pattern"
            names.append(name)
    names.sort(key=lambda s: (-len(s), s))
    rx = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")
    families = {fam: list(FINISH_FAMILIES[fam]) for fam in FINISH_FAMILIES}
    families["pattern"] = list(PATTERNS)
    return rx, fam_of, families


FINISH_RE, FINISH_FAMILY_OF, FINISH_CHOICES = build_finish_re()
ONE_WORD_CHOICES = {}  # filled by load_bases
# All size units in one regex: alternative i has exactly one group, number i + 1. The leading
# look-ahead (every alternative starts with a digit or one of these letters) lets the regex
# engine skip most positions quickly (5x faster).
SIZE_RE = re.compile("(?=[0-9SMLJEP])(?:" + "|".join("(?:" + rx + ")" for _fam, rx, _ladder in SIZE_UNITS) + ")")
SIZE_FAMILY_OF_GROUP = [None] + [fam for fam, _rx, _ladder in SIZE_UNITS]
HD_INDEX = keyword_index(HD_CATEGORIES)
RETAIL_INDEX = keyword_index(RETAIL_CATEGORIES)


def parse_base(title, retail, brand, path, prices, rng):
    b = Base()
    b.title = title
    b.retail = retail
    if brand and not title.startswith(brand + " "):
        brand = None
    b.brand = brand
    b.brand_end = len(brand) if brand else 0
    b.path = list(path)
    b.top = path[0] if not retail else "Home & Gifts"
    b.nwords = len(title.split())
    taken = []  # (start, end) spans already claimed

    def free(s, e):
        if s < b.brand_end:
            return False
        for a, z in taken:
            if s < z and a < e:
                return False
        return True

    sizes = []
    for m in SIZE_RE.finditer(title):
        g = m.lastindex
        s, e = m.span(g)
        if free(s, e):
            taken.append((s, e))
            # (value span, unit, value, phrase text before and after the value)
            sizes.append((s, e, SIZE_FAMILY_OF_GROUP[g], m.group(g), title[m.start():s], title[e:m.end()]))
    b.sizes = tuple(sizes)

    finishes = []
    for m in FINISH_RE.finditer(title):
        s, e = m.span(1)
        if free(s, e):
            taken.append((s, e))
            finishes.append((s, e, FINISH_FAMILY_OF[m.group(1)]))
    b.finishes = tuple(finishes)

    b.model = None
    for m in MODEL_RE.finditer(title):
        tok = m.group(1)
        s, e = m.span(1)
        if len(tok) >= 5 and sum(c.isdigit() for c in tok) >= 2 and sum(c.isalpha() for c in tok) >= 2 and free(s, e):
            b.model = (s, e)
            taken.append((s, e))
            break

    # Droppable tail: a trailing parenthetical, or a "with ..." clause in the second half.
    cut = 0
    if title.endswith(")"):
        i = title.rfind(" (")
        if i > len(title) // 2:
            cut = i
    if not cut:
        i = title.rfind(" with ")
        if i > len(title) // 2:
            cut = i
    b.cut = cut

    lo, hi = prices
    b.price = lo * (hi / lo) ** rng.random()
    return b


def load_bases(data_dir, rng):
    hd_path = data_dir.joinpath(*HD_FILE)
    rt_path = data_dir.joinpath(*RETAIL_FILE)
    for p in (hd_path, rt_path):
        if not p.is_file():
            die(f"missing input {p} (use --data DIR)")
    hd = [(str(o["id"]), str(o["title"]).strip()) for o in read_jsonl(hd_path)]
    rt = [(str(o["id"]), str(o["title"]).strip(), o.get("price")) for o in read_jsonl(rt_path)]

    hd_brands = mine_brands([t for _, t in hd])
    originals = []  # (id, base, real price or None)
    for (pid, title), brand in zip(hd, hd_brands):
        # The brand is left out: "Chicago Faucets ... Spout Adapter" is not a faucet.
        rest = title[len(brand):] if brand and title.startswith(brand + " ") else title
        path, prices = categorise(rest, HD_CATEGORIES, HD_INDEX, HD_FALLBACK)
        originals.append((pid, parse_base(title, False, brand, path, prices, rng), None))
    for pid, title, price in rt:
        path, prices = categorise(title, RETAIL_CATEGORIES, RETAIL_INDEX, RETAIL_FALLBACK, rightmost=False)
        b = parse_base(title, True, None, path, prices, rng)
        real_price = None
        if isinstance(price, (int, float)) and not isinstance(price, bool) and price >= 0:
            real_price = b.price = round(float(price), 2)
        originals.append((pid, b, real_price))

    # Finish choices: the static lists plus every occurrence in the real titles, so that swaps
    # follow the real frequencies (and keep title lengths close to the real ones).
    for _, b, _ in originals:
        for s, e, fam in b.finishes:
            FINISH_CHOICES[fam].append(b.title[s:e])
    for fam in FINISH_CHOICES:
        ONE_WORD_CHOICES[fam] = [c for c in FINISH_CHOICES[fam] if " " not in c]

    # Brands per category path, frequency-weighted (one entry per product), in file order.
    brand_pool = {}
    all_brands = []
    for _, b, _ in originals:
        if b.brand:
            brand_pool.setdefault(tuple(b.path), []).append(b.brand)
            all_brands.append(b.brand)
    return originals, brand_pool, all_brands


def digest(title):
    return int.from_bytes(hashlib.blake2b(title.encode("utf-8"), digest_size=8).digest(), "little")


def random_model(rng):
    n_letters = rng.choice((2, 2, 3))
    n_digits = rng.choice((3, 4, 4, 5))
    s = "".join(rng.choice(UPPER) for _ in range(n_letters)) + "-" + "".join(rng.choice(DIGITS) for _ in range(n_digits))
    if rng.random() < 0.5:
        s += rng.choice(UPPER)
    return s


def reshape_model(tok, rng):
    out = []
    for c in tok:
        if c.isdigit():
            out.append(rng.choice(DIGITS))
        elif c.isalpha():
            out.append(rng.choice(UPPER))
        else:
            out.append(c)
    return "".join(out)


def nudge(ladder, value, rng):
    """Another rung of the ladder near value (or any rung when value is not on it)."""
    try:
        i = ladder.index(value)
    except ValueError:
        j = rng.randrange(len(ladder))
        return ladder[j]
    step = rng.choice((-3, -2, -1, 1, 1, 2, 3))
    j = min(max(i + step, 0), len(ladder) - 1)
    if j == i:
        j = i - 1 if i > 0 else i + 1
    return ladder[j]


LADDERS = {}
for _fam, _rx, _ladder in SIZE_UNITS:
    LADDERS.setdefault(_fam, _ladder)


def make_variant(b, rng, brand_pool, all_brands, lean=False):
    """One random variant of a base: (title, brand, color, size, price factor).

    One edit that applies to the base is always made (brand, size, colour/finish or model
    swap; an added phrase when none applies); the others are added with small probabilities.
    lean (set while the generated titles run longer than the real ones on average) makes
    dropping the tail likelier and optional additions rarer.
    """
    more = 0.3 if lean else 1.0  # scales the optional additions
    title = b.title
    edits = []  # (start, end, text) on the base title, non-overlapping
    brand = b.brand
    color = None
    size = None
    factor = 1.0
    end = len(title)

    # Shrink: drop the droppable tail (keeps lengths close to the real distribution).
    if b.cut and rng.random() < (0.6 if lean else 0.4):
        end = b.cut
    elif b.retail and b.nwords >= 4 and rng.random() < (0.5 if lean else 0.3):
        # Gift-shop titles: drop the leading word ("Retrospot Large Milk Jug" -> "Large Milk Jug").
        cut_first = title.find(" ") + 1
        edits.append((0, cut_first, ""))
    sizes = [sp for sp in b.sizes if sp[1] <= end]
    finishes = [fp for fp in b.finishes if fp[1] <= end]
    model = b.model if b.model and b.model[1] <= end else None

    ops = []
    if brand:
        ops.append("brand")
    if sizes:
        ops.append("size")
    if finishes:
        ops.append("finish")
    if model:
        ops.append("model")
    primary = ops[rng.randrange(len(ops))] if ops else "add"

    # Brand swap, to a brand seen in the same category (frequency-weighted).
    if brand and (primary == "brand" or rng.random() < 0.3):
        pool = brand_pool.get(tuple(b.path)) or all_brands
        nb = rng.choice(pool)
        if nb == b.brand:
            nb = rng.choice(all_brands)
        if nb != b.brand:
            edits.append((0, b.brand_end, nb))
            brand = nb
            factor *= 0.8 + 0.5 * rng.random()

    # Attribute word after the brand (or first).
    if rng.random() < 0.03 * more:
        word = rng.choice(PREFIX_PHRASES)
        if b.brand_end:
            edits.append((b.brand_end, b.brand_end, " " + word))
        else:
            edits.append((0, 0, word + " "))

    # Size variant: the first size in the kept part is the size attribute.
    if sizes:
        s, e, fam, value, pre, post = sizes[0]
        size = (pre + value + post).strip()
        if primary == "size" or rng.random() < 0.3:
            i = rng.randrange(len(sizes))
            s, e, fam, value, pre, post = sizes[i]
            nv = nudge(LADDERS[fam], value, rng)
            edits.append((s, e, nv))
            if i == 0:
                size = (pre + nv + post).strip()
            ladder = LADDERS[fam]
            if value in ladder:
                factor *= 1.1 ** (ladder.index(nv) - ladder.index(value))

    # Colour / finish variant (within the family: metal, colour, wood tone, pattern).
    if finishes:
        s, e, fam = finishes[0]
        name = title[s:e]
        if primary == "finish" or rng.random() < 0.35:
            choices = FINISH_CHOICES[fam]
            nn = rng.choice(choices)
            if nn == name:
                nn = choices[(choices.index(nn) + 1) % len(choices)]
            edits.append((s, e, nn))
            name = nn
        if fam != "pattern":
            color = name

    # Model number: re-randomise an existing one (same shape).
    if model and (primary == "model" or rng.random() < 0.3):
        s, e = model
        edits.append((s, e, reshape_model(title[s:e], rng)))

    # Added phrases, in the order real titles use: phrase, pack, colour, model number.
    add_phrase = rng.random() < 0.04 * more
    add_pack = not b.sizes and rng.random() < 0.03 * more
    add_color = not b.finishes and rng.random() < 0.06 * more
    add_model = not b.retail and not model and rng.random() < 0.03 * more
    if primary == "add":
        if b.retail:
            first = title.split(" ", 1)[0]
            if b.nwords >= 3 and rng.random() < 0.75:
                # Gift-shop titles lead with a theme word: swap it for a colour or pattern.
                fam = "colour" if rng.random() < 0.6 else "pattern"
                nn = rng.choice(ONE_WORD_CHOICES[fam])
                edits.append((0, len(first), nn))
                if fam == "colour":
                    color = nn
            elif rng.random() < 0.7:
                add_color = True
            else:
                add_phrase = True
        else:
            pick = rng.randrange(4)
            if pick == 0:
                add_phrase = True
            elif pick == 1:
                add_pack = True
            elif pick == 2:
                add_color = True
            else:
                add_model = True

    tail = ""
    if add_phrase:
        tail += " " + rng.choice(SUFFIX_PHRASES.get(b.top, SUFFIX_DEFAULT))
    if add_pack:
        n = rng.choice(("2", "3", "4", "6", "10", "12", "24"))
        if b.retail:
            tail += f" Set of {n}" if rng.random() < 0.5 else f" (Pack of {n})"
        else:
            tail += f" ({n}-Pack)" if rng.random() < 0.6 else f" (Pack of {n})"
        if size is None:
            size = f"Pack of {n}"
        factor *= 0.8 * int(n)
    if add_color:
        if b.retail:
            color = rng.choice(ONE_WORD_CHOICES["colour"])
            edits.append((0, 0, color + " "))
        else:
            fam = "metal" if b.top in ("Bath", "Kitchen", "Hardware") else "colour"
            color = rng.choice(FINISH_CHOICES[fam])
            tail += " in " + color
    if add_model:
        tail += " Model # " + random_model(rng)

    edits.sort()
    parts = []
    pos = 0
    for s, e, text in edits:
        if s < pos:  # overlapping edit (cannot happen with disjoint spans; be safe)
            continue
        parts.append(title[pos:s])
        parts.append(text)
        pos = e
    parts.append(title[pos:end])
    new = "".join(parts).strip() + tail
    factor *= 0.85 + 0.35 * rng.random()
    return new, brand, color, size, factor


def shop_price(p, rng):
    """A shelf price with a realistic ending (x.97, x.98, x.99, x.49), 2 decimals."""
    if p < 10:
        return round(max(p, 0.1), 2)
    return round(int(p) + rng.choice((0.97, 0.98, 0.99, 0.49, 0.0)), 2)


def popularity(rng):
    return min(int(rng.paretovariate(1.2)) - 1, 100000)


def description(b, brand, color, rng):
    leaf = b.path[-1]
    sents = DESCRIPTION_SENTENCES.get(b.top, DESCRIPTION_DEFAULT)
    first = (brand + " " if brand else "") + leaf.lower()
    if color:
        first += " in " + color.lower()
    first = first[0].upper() + first[1:] + "."
    k = rng.choice((1, 2))
    i = rng.randrange(len(sents))
    rest = [sents[(i + j) % len(sents)] for j in range(k)]
    return " ".join([first] + rest)


def product_line(encode, pid, title, desc, path, brand, price, attrs, pop):
    obj = {"id": pid, "title": title}
    if desc:
        obj["description"] = desc
    obj["category"] = path
    if brand:
        obj["brand"] = brand
    if price is not None:
        obj["price"] = price
    if attrs:
        obj["attributes"] = attrs
    obj["popularity"] = pop
    return encode(obj) + "\n"


def resolve_out(out):
    out = Path(out).expanduser()
    out = Path(os.path.abspath(out))
    real = Path(os.path.realpath(out.parent)) / out.name
    repo = Path(os.path.realpath(REPO_ROOT))
    bench = repo / "bench-data"
    def inside(p, d):
        try:
            p.relative_to(d)
            return True
        except ValueError:
            return False
    if inside(real, repo):
        if not inside(real, bench) or real == bench:
            die(f"refusing to write {out} inside the repository; use a path outside it or under {BENCH_DIR}/")
        real.parent.mkdir(parents=True, exist_ok=True)
    elif not real.parent.is_dir():
        die(f"output folder {out.parent} does not exist")
    return real


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate a deterministic synthetic product catalog (JSONL) from the real "
        "Home Depot and Online Retail titles.")
    ap.add_argument("--products", type=int, required=True, help="number of products to write")
    ap.add_argument("--out", required=True, help="output JSONL file (outside the repo or under bench-data/)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="datasets folder (default ../shared/datasets from the repo root)")
    args = ap.parse_args(argv)
    if args.products < 0:
        die("--products must be >= 0")
    out = resolve_out(args.out)
    t0 = time.monotonic()
    # A SIGTERM unwinds like Ctrl-C, so the temporary file is removed (SIGKILL leaves only a
    # hidden ".<name>.*.tmp" file, never a complete-looking FILE).
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))

    rng = Random(args.seed)
    originals, brand_pool, all_brands = load_bases(Path(args.data), rng)
    bases = [b for _, b, _ in originals]
    real_words = sum(b.nwords for b in bases) / len(bases)

    encode = json.JSONEncoder(ensure_ascii=False).encode
    n = args.products
    seen = set()
    for _, b, _ in originals:
        seen.add(digest(b.title))

    gen_count = 0
    gen_words = 0
    fd, tmp = tempfile.mkstemp(prefix="." + out.name + ".", suffix=".tmp", dir=str(out.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
            write = f.write
            written = 0
            for pid, b, real_price in originals:
                if written >= n:
                    break
                price = real_price if real_price is not None else shop_price(b.price, rng)
                attrs = {}
                for s, e, fam in b.finishes:
                    if fam != "pattern":
                        attrs["color"] = b.title[s:e]
                        break
                if b.sizes:
                    s, e, fam, value, pre, post = b.sizes[0]
                    attrs["size"] = (pre + value + post).strip()
                write(product_line(encode, pid, b.title, None, b.path, b.brand, price, attrs, popularity(rng)))
                written += 1

            nb = len(bases)
            by_source = {False: [b for b in bases if not b.retail], True: [b for b in bases if b.retail]}
            fallback_counter = 0
            clashes = 0
            while written < n:
                # A title already used is retried with a fresh base and fresh edits; after a
                # few tries a counter-based model number makes it unique.
                # The retries stay with the first base's source, keeping the sources' mix; the
                # length feedback keeps the running mean title length near the real one.
                source = by_source[bases[rng.randrange(nb)].retail]
                lean = gen_words > gen_count * real_words
                for _attempt in range(6):
                    b = source[rng.randrange(len(source))]
                    title, brand, color, size, factor = make_variant(b, rng, brand_pool, all_brands, lean)
                    d = digest(title)
                    if d not in seen:
                        break
                else:
                    clashes += 1
                    stem = title
                    while True:
                        fallback_counter += 1
                        title = f"{stem} Model # {rng.choice(UPPER)}{rng.choice(UPPER)}-{fallback_counter:05d}"
                        d = digest(title)
                        if d not in seen:
                            break
                seen.add(d)
                gen_count += 1
                gen_words += len(title.split())
                attrs = {}
                if color:
                    attrs["color"] = color
                if size:
                    attrs["size"] = size
                desc = description(b, brand, color, rng) if rng.random() < 0.5 else None
                price = shop_price(b.price * factor, rng)
                write(product_line(encode, f"g{gen_count:07d}", title, desc, b.path, brand, price, attrs, popularity(rng)))
                written += 1
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

    secs = time.monotonic() - t0
    gen_mean = f"{gen_words / gen_count:.2f}" if gen_count else "n/a"
    print(f"gen-catalog: wrote {written} products ({written - gen_count} real, {gen_count} generated) "
          f"to {out} in {secs:.1f} s; mean title words real {real_words:.2f} vs generated {gen_mean}; "
          f"{clashes} title clashes given a counter model number",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
