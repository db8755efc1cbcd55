"""Reading the client's data: DomainBed-layout datasets and their seeded splits, image files decoded as
the student sees them, decoded image stores, and the paper's augmentation of one picture. Imports
nothing else of the client but its errors."""
