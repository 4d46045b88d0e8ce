"""The words product names are made of: catalog templates, and one for products it lacks.

Why a module of its own: the vocabulary is data, a third of the workload's lines; kept apart,
the code that draws from it (``_catalog``, ``_lines``) reads in a screen.
"""

from __future__ import annotations

import random

__all__ = ["CATALOG_TEMPLATES", "NEW_PRODUCT_TEMPLATE", "fill_template"]

# Each template draws one word from each list in turn; the combinations are far more than
# a few thousand, so unique names come quickly.

CATALOG_TEMPLATES: tuple[tuple[int, str, tuple[tuple[str, ...], ...]], ...] = (
    (
        5,
        "{} {} {} M{} x {}mm",
        (
            ("Stainless Steel", "Zinc Plated", "Galvanized", "Brass", "Black Oxide"),
            ("Hex", "Socket Head", "Pan Head", "Countersunk", "Button Head", "Flange"),
            ("Bolt", "Screw", "Cap Screw", "Machine Screw"),
            ("3", "4", "5", "6", "8", "10", "12"),
            ("10", "12", "16", "20", "25", "30", "35", "40", "50", "60", "70", "80", "100"),
        ),
    ),
    (
        2,
        "{} {} M{} Pack of {}",
        (
            ("Stainless Steel", "Zinc Plated", "Galvanized", "Brass", "Nylon"),
            ("Hex Nut", "Nyloc Nut", "Flat Washer", "Spring Washer", "Wing Nut", "Dome Nut"),
            ("3", "4", "5", "6", "8", "10", "12", "16"),
            ("10", "25", "50", "100", "200"),
        ),
    ),
    (
        2,
        "{} Gloves {} Box of {}",
        (
            ("Nitrile", "Latex", "Vinyl", "Powder Free Nitrile", "Cut Resistant", "Leather Work"),
            ("Small", "Medium", "Large", "Extra Large"),
            ("50", "100", "200"),
        ),
    ),
    (
        2,
        "{} Tape {}mm x {}m {}",
        (
            ("Duct", "Masking", "Electrical Insulation", "Packing", "Double Sided", "Gaffer"),
            ("12", "19", "25", "38", "48", "50", "75"),
            ("10", "25", "33", "50", "66"),
            ("Black", "White", "Grey", "Red", "Blue", "Yellow", "Clear", "Green"),
        ),
    ),
    (
        2,
        "{} Cable Ties {} x {}mm {} Pack of {}",
        (
            ("Nylon", "Heavy Duty", "Releasable", "Stainless Steel", "UV Resistant"),
            ("2.5", "3.6", "4.8", "7.6"),
            ("100", "150", "200", "300", "380", "500"),
            ("Black", "Natural", "Assorted"),
            ("50", "100", "500"),
        ),
    ),
    (
        2,
        "{} {} {} Litre",
        (
            ("Heavy Duty", "Industrial", "Eco", "Citrus", "Fragrance Free", "Concentrated"),
            (
                "Degreaser",
                "Floor Cleaner",
                "Hand Soap",
                "Glass Cleaner",
                "Disinfectant",
                "Washing Up Liquid",
                "Surface Spray",
            ),
            ("0.5", "1", "2", "5", "10", "20"),
        ),
    ),
    (
        2,
        "{} LED Bulb {} {}W {}",
        (
            ("Dimmable", "Standard", "Filament", "Frosted", "Smart"),
            ("E27", "E14", "B22", "GU10", "GU5.3"),
            ("4", "5", "6", "7", "9", "11", "13", "15"),
            ("Warm White", "Cool White", "Daylight", "Neutral White"),
        ),
    ),
    (
        2,
        "{} {} {}mm",
        (
            ("Copper", "Brass", "PVC", "Stainless Steel", "Chrome Plated", "Galvanized"),
            (
                "Elbow 90 Degree",
                "Elbow 45 Degree",
                "Equal Tee",
                "Straight Coupler",
                "Reducer",
                "End Cap",
                "Compression Fitting",
                "Ball Valve",
            ),
            ("8", "10", "15", "22", "28", "35", "42", "54"),
        ),
    ),
    (
        1,
        "Safety {} {} {}",
        (
            ("Glasses", "Goggles", "Helmet", "Boots", "Vest", "Ear Defenders"),
            ("Clear", "Tinted", "Yellow", "Orange", "Black", "White"),
            ("Anti Fog", "Standard", "Vented", "Large", "Medium", "Small", "Extra Large"),
        ),
    ),
    (
        1,
        "Copy Paper {} {}gsm {} Ream of {}",
        (
            ("A4", "A3", "A5", "Letter"),
            ("75", "80", "90", "100", "120", "160"),
            ("White", "Ivory", "Recycled", "Bright White", "Assorted"),
            ("250", "500"),
        ),
    ),
)

# Products the catalog never has: a separate vocabulary, so a fuzzy match against the catalog
# scores low and the line goes to "create".
NEW_PRODUCT_TEMPLATE: tuple[str, tuple[tuple[str, ...], ...]] = (
    "{} {} {} Series {}",
    (
        ("Ergonomic", "Foldable", "Rechargeable", "Wireless", "Solar", "Bamboo", "Insulated"),
        (
            "Standing Desk Mat",
            "Garden Light",
            "Label Printer",
            "Water Bottle",
            "Headset",
            "Desk Lamp",
            "Phone Stand",
            "Lunch Box",
            "Monitor Arm",
            "Bike Pump",
        ),
        ("Graphite", "Sage", "Coral", "Navy", "Sand", "Plum"),
        tuple(str(n) for n in range(1, 100)),
    ),
)


def fill_template(rng: random.Random, template: str, words: tuple[tuple[str, ...], ...]) -> str:
    return template.format(*(rng.choice(choices) for choices in words))
